"""``GET /metrics``: Prometheus text for the whole deployment (see ``app/ops/telemetry.py``).

Who may scrape: the role ``metrics`` (``LIVEDASH_METRICS_TOKEN``, checked in
process so a scrape works while Redis is down, or a token made with
``livedash token create --role metrics``), and any reading role. Prometheus
sends it as ``authorization: credentials_file`` (docs/operations.md); without
one it gets 401, never the login page.
"""

from __future__ import annotations

from quart import Blueprint, Response

from app.auth.access import READ
from app.auth.tokens import Role
from app.ops import telemetry
from app.services import services
from app.web.routing import route

bp = Blueprint("prometheus", __name__)

SCRAPE = READ | {Role.METRICS}


@route(
    bp,
    "GET",
    "/metrics",
    access=SCRAPE,
    summary="Prometheus metrics (all workers)",
    tag="operations",
    description="Prometheus text exposition. Scrape with the role `metrics` (LIVEDASH_METRICS_TOKEN as a Bearer "
    "token, e.g. Prometheus's `authorization: credentials_file`); without a credential: 401.",
    ok_type="text/plain",
)
async def metrics() -> Response:
    """Prometheus text: every worker's figures when PROMETHEUS_MULTIPROC_DIR is set."""
    body = await telemetry.exposition(services())
    return Response(body, content_type=telemetry.CONTENT_TYPE, headers={"Cache-Control": "no-store"})

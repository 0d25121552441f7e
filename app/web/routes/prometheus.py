"""``GET /metrics``: Prometheus text for the whole deployment (see ``app/ops/telemetry.py``)."""

from __future__ import annotations

from quart import Blueprint, Response

from app.auth.access import READ
from app.ops import telemetry
from app.services import services
from app.web.routing import route

bp = Blueprint("prometheus", __name__)


@route(
    bp,
    "GET",
    "/metrics",
    access=READ,
    summary="Prometheus metrics (all workers)",
    tag="operations",
    ok_type="text/plain",
)
async def metrics() -> Response:
    """Prometheus text: every worker's figures when PROMETHEUS_MULTIPROC_DIR is set."""
    body = await telemetry.exposition(services())
    return Response(body, content_type=telemetry.CONTENT_TYPE, headers={"Cache-Control": "no-store"})

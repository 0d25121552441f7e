"""``GET /metrics``: Prometheus text for the whole deployment (see ``app/telemetry.py``)."""

from __future__ import annotations

from quart import Blueprint, Response, current_app

from app.lifespan import engine
from app.ops import telemetry

bp = Blueprint("prometheus", __name__)


@bp.get("/metrics")
async def metrics() -> Response:
    """Prometheus text: every worker's figures when PROMETHEUS_MULTIPROC_DIR is set."""
    body = await telemetry.exposition(engine(), telemetry.sampler_of(current_app))
    return Response(body, content_type=telemetry.CONTENT_TYPE, headers={"Cache-Control": "no-store"})

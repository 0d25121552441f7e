"""``GET /``: the dashboard, server-rendered from snapshots, then live over SSE."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template

from ..engine import engine

bp = Blueprint("dashboard", __name__)

SPARK_POINTS = 120


async def _tiles_context() -> dict[str, Any]:
    eng = engine()
    series, cursor = await eng.series.latest()
    ids = [f"{r['device']}/{r['metric']}" for r in series]
    history, _ = await eng.series.history(ids, SPARK_POINTS)
    return {"series": series, "history": history, "cursor": cursor}


@bp.get("/")
async def index() -> str:
    return await render_template("dashboard.html", **await _tiles_context())


@bp.get("/fragments/tiles")
async def tiles() -> str:
    return await render_template("_tiles.html", **await _tiles_context())

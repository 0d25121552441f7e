"""``GET /``: the dashboard, server-rendered from snapshots, then kept live by static/js."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template

from ..engine import engine
from .page_context import firing, page_settings, rules_by_series

bp = Blueprint("dashboard", __name__)

SPARK_POINTS = 120
RECENT_NOTES = 30


async def _tiles_context() -> dict[str, Any]:
    eng = engine()
    cursor = await eng.log.head()  # first: every snapshot below is at least this new
    series, _ = await eng.series.latest()
    ids = [f"{r['device']}/{r['metric']}" for r in series]
    history, _ = await eng.series.history(ids, SPARK_POINTS)
    rules, _ = await eng.alerts.rules()
    return {
        "series": series,
        "history": history,
        "rules": rules_by_series(rules),
        "firing": firing,
        "cursor": cursor,
    }


@bp.get("/")
async def index() -> str:
    eng = engine()
    context = await _tiles_context()
    notes = await eng.annotations.search(limit=RECENT_NOTES)
    return await render_template("dashboard.html", notes=notes, room="dashboard", page=page_settings(eng), **context)


@bp.get("/fragments/tiles")
async def tiles() -> str:
    return await render_template("_tiles.html", **await _tiles_context())

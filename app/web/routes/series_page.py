"""``GET /series/<device>/<metric>``: one series with its chart, notes and alert rules."""

from __future__ import annotations

import re

from quart import Blueprint, render_template

from app.auth.access import READ
from app.auth.guard import require_device_visible
from app.errors import NotFound
from app.lifespan import engine
from app.storage.keyspace import series_id
from app.validation import SLUG_PATTERN
from app.web.routes.page_context import firing, page_settings
from app.web.routing import Param, route

bp = Blueprint("series_page", __name__)

NOTES = 200


@route(
    bp,
    "GET",
    "/series/<device>/<metric>",
    access=READ,
    summary="One series' page (HTML)",
    tag="pages",
    ok_type="text/html",
    params=(Param("device", "path", required=True), Param("metric", "path", required=True)),
)
async def series(device: str, metric: str) -> str:
    if not (re.match(SLUG_PATTERN, device) and re.match(SLUG_PATTERN, metric)):
        raise NotFound("no such series")
    require_device_visible(device)
    eng = engine()
    cursor = await eng.log.head()  # first: every snapshot below is at least this new
    latest, _ = await eng.series.latest(device, metric)
    sid = series_id(device, metric)
    history, _ = await eng.series.history([sid], eng.settings.history_size)
    rules, _ = await eng.alerts.rules()
    rules = [r for r in rules if r["device"] == device and r["metric"] == metric]
    notes = await eng.annotations.search(device=device, limit=NOTES)
    # Notes on the device as a whole belong on every one of its charts.
    notes = [n for n in notes if n.get("metric") in (None, metric)]
    return await render_template(
        "series.html",
        device=device,
        metric=metric,
        r=latest[0] if latest else None,
        points=history[sid],
        rules=rules,
        firing=firing,
        notes=notes,
        cursor=cursor,
        room=f"device:{device}",
        page=page_settings(eng),
    )

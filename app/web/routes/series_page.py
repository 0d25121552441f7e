"""``GET /series/<device>/<metric>``: one series with its chart, notes and alert rules."""

from __future__ import annotations

import re

from quart import Blueprint, render_template

from app.auth.access import READ
from app.auth.guard import require_device_visible
from app.errors import NotFound
from app.services import services
from app.storage.keyspace import series_id
from app.validation import SLUG_PATTERN
from app.web.routes.page_context import firing, page_settings
from app.web.routes.readings import TAG, tag_filter
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
    params=(
        Param("device", "path", required=True, schema={"pattern": SLUG_PATTERN}),
        Param("metric", "path", required=True, schema={"pattern": SLUG_PATTERN}),
        TAG,
    ),
    errors=(400, 404),
)
async def series(device: str, metric: str) -> str:
    if not (re.match(SLUG_PATTERN, device) and re.match(SLUG_PATTERN, metric)):
        raise NotFound("no such series")
    require_device_visible(device)
    # A tagged series: ?tag=k:v for each of its tags (its tiles link so); none: the untagged series.
    tags = {key: min(values) for key, values in (tag_filter() or {}).items()}
    svc = services()
    cursor = await svc.log.head()  # first: every snapshot below is at least this new
    latest, _ = await svc.series.latest(device, metric, tag_filter())
    latest = [r for r in latest if (r.get("tags") or {}) == tags]
    sid = series_id(device, metric, tags)
    history, _ = await svc.series.history([sid], svc.settings.history_size)
    rules, _ = await svc.alerts.rules()
    rules = [r for r in rules if (r.get("series") or f"{r['device']}/{r['metric']}") == sid]
    notes = await svc.annotations.search(device=device, limit=NOTES)
    # Notes on the device as a whole belong on every one of its charts.
    notes = [n for n in notes if n.get("metric") in (None, metric)]
    return await render_template(
        "series.html",
        device=device,
        metric=metric,
        tags=tags,
        series_key=sid,
        r=latest[0] if latest else None,
        points=history[sid],
        rules=rules,
        firing=firing,
        notes=notes,
        cursor=cursor,
        room=f"device:{device}",
        page=page_settings(svc),
    )

"""``GET /``: the dashboard, server-rendered from snapshots, then kept live by static/js."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template

from app.auth.access import READ
from app.auth.guard import current_identity
from app.services import services
from app.storage.keyspace import series_id
from app.web.routes.document_views import live_document
from app.web.routes.page_context import firing, page_settings, rules_by_series
from app.web.routing import ANN_ID, RULE_ID, route

bp = Blueprint("dashboard", __name__)

SPARK_POINTS = 120
RECENT_NOTES = 30


async def _tiles_context() -> dict[str, Any]:
    svc = services()
    cursor = await svc.log.head()  # first: every snapshot below is at least this new
    series, _ = await svc.series.latest()
    series = [r for r in series if current_identity().sees_device(r["device"])]  # a scoped token's tiles only
    ids = [series_id(r["device"], r["metric"], r.get("tags")) for r in series]  # tags are part of a series
    history, _ = await svc.series.history(ids, SPARK_POINTS)
    rules, _ = await svc.alerts.rules()
    return {
        "series": series,
        "history": history,
        "rules": rules_by_series(rules),
        "firing": firing,
        "cursor": cursor,
    }


@route(bp, "GET", "/", access=READ, summary="The dashboard (HTML)", tag="pages", ok_type="text/html")
async def index() -> str:
    svc = services()
    context = await _tiles_context()
    notes = await svc.annotations.search(limit=RECENT_NOTES)
    notes = [n for n in notes if current_identity().sees_device(n["device"])]
    return await render_template("dashboard.html", notes=notes, room="dashboard", page=page_settings(svc), **context)


@route(
    bp, "GET", "/fragments/tiles", access=READ, summary="The tiles fragment (htmx)", tag="pages", ok_type="text/html"
)
async def tiles() -> str:
    return await render_template("_tiles.html", **await _tiles_context())


@route(
    bp,
    "GET",
    "/fragments/note/<annotation_id>",
    access=READ,
    summary="One annotation as a fragment (htmx)",
    tag="pages",
    ok_type="text/html",
    params=(ANN_ID,),
    errors=(404, 410),
)
async def note(annotation_id: str) -> str:
    """One note's list item, for a page that learns of it from an event."""
    doc = await live_document(services().annotations, annotation_id, "annotation")
    return await render_template("_note.html", a=doc)


@route(
    bp,
    "GET",
    "/fragments/rule/<rule_id>",
    access=READ,
    summary="One alert rule as a fragment (htmx)",
    tag="pages",
    ok_type="text/html",
    params=(RULE_ID,),
    errors=(404, 410),
)
async def rule(rule_id: str) -> str:
    """One alert rule's list item (summary and editor)."""
    doc = await live_document(services().alerts, rule_id, "alert rule")
    return await render_template("_rule.html", rule=doc)

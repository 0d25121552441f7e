"""Alert rules over HTTP, with their current state.

Rules follow the same write rules as annotations: ``version`` or
``If-Match`` makes a write conditional (409 with the current rule when it is
stale), none makes it last-write-wins, and a deleted rule's tombstone
answers 410. ``GET /api/alerts/rules`` and ``GET /api/alerts/state`` are the
snapshots, each with the event-log cursor to stream from.
"""

from __future__ import annotations

from quart import Blueprint, Response

from app.auth.access import ADMIN, READ
from app.auth.guard import current_identity
from app.documents.alert_rules import RuleCreate, RuleUpdate, rule_form_fields
from app.errors import Unprocessable
from app.services import services
from app.web.bodies import slug_arg
from app.web.responses import NO_STORE, json_response
from app.web.routes.document_views import (
    delete_document,
    delete_routes,
    doc_response,
    document_body,
    if_match,
    live_document,
    revisions_response,
    visible_document,
)
from app.web.routing import BODY_ERRORS, DEVICE, IF_MATCH, METRIC, RULE_ID, WRITE_ERRORS, route

bp = Blueprint("alerts", __name__)

NOUN = "alert rule"


async def _known_channels(ids: list[str]) -> None:
    unknown = await services().alerting.channels.unknown(ids)
    if unknown:
        raise Unprocessable([{"field": "channels", "error": f"no channel {', '.join(map(repr, unknown))}"}])


@route(
    bp,
    "GET",
    "/api/alerts/rules",
    access=READ,
    summary="List alert rules",
    tag="alerts",
    params=(DEVICE, METRIC),
    errors=(400,),
)
async def list_rules() -> Response:
    device, metric = slug_arg("device"), slug_arg("metric")
    rules, cursor = await services().alerts.rules()
    rules = [r for r in rules if device in (None, r["device"]) and metric in (None, r["metric"])]
    rules = [r for r in rules if current_identity().sees_device(r["device"])]  # a scoped token's devices only
    return json_response({"rules": rules, "cursor": cursor}, headers=NO_STORE)


@route(bp, "GET", "/api/alerts/state", access=READ, summary="Firing and resolved state of each rule", tag="alerts")
async def states() -> Response:
    rules, cursor = await services().alerts.rules()
    found = {r["id"]: r["state"] for r in rules if current_identity().sees_device(r["device"])}
    return json_response({"states": found, "cursor": cursor}, headers=NO_STORE)


@route(
    bp,
    "POST",
    "/api/alerts/rules",
    access=ADMIN,
    summary="Create an alert rule",
    tag="alerts",
    description="A threshold rule needs metric, op and threshold, a no_data rule no_data_seconds (a device-wide "
    "no_data rule, without metric, has no tags); channels must name existing channels: else 422.",
    body="RuleCreate",
    ok=201,
    errors=BODY_ERRORS,
)
async def create() -> Response:
    _, data = await document_body(RuleCreate, rule_form_fields, update=False)
    await _known_channels(data.channels)
    written = await services().alerts.create(data, current_identity().actor())
    return doc_response(written.doc, 201, f"/api/alerts/rules/{written.doc['id']}")


@route(
    bp,
    "GET",
    "/api/alerts/rules/<rule_id>",
    access=READ,
    summary="One alert rule",
    tag="alerts",
    params=(RULE_ID,),
    errors=(404, 410),
)
async def fetch(rule_id: str) -> Response:
    return doc_response(await live_document(services().alerts, rule_id, NOUN))


@route(
    bp,
    "GET",
    "/api/alerts/rules/<rule_id>/revisions",
    access=READ,
    summary="A rule's revisions",
    tag="alerts",
    description="Stays readable once the rule is deleted (its history, until the tombstone expires).",
    params=(RULE_ID,),
    errors=(404,),
)
async def revisions(rule_id: str) -> Response:
    return await revisions_response(services().alerts, rule_id, NOUN)


@route(
    bp,
    "POST",
    "/api/alerts/rules/<rule_id>",
    access=ADMIN,
    summary="Update an alert rule",
    tag="alerts",
    description="Same version rules as annotations. The series (device, metric, tags) cannot change: 422.",
    params=(RULE_ID, IF_MATCH),
    body="RuleUpdate",
    errors=WRITE_ERRORS,
)
async def update(rule_id: str) -> Response:
    await visible_document(services().alerts, rule_id, NOUN)
    _, patch = await document_body(RuleUpdate, rule_form_fields, update=True)
    await _known_channels(patch.channels or [])
    expected = if_match(patch.version)
    written = await services().alerts.update(rule_id, patch, expected, current_identity().actor())
    return doc_response(written.doc)


@delete_routes(
    bp,
    "/api/alerts/rules/<rule_id>",
    access=ADMIN,
    summary="Delete an alert rule",
    tag="alerts",
    description="Same version rules as an update; the body is optional.",
    params=(RULE_ID, IF_MATCH),
)
async def delete(rule_id: str) -> Response:
    return doc_response((await delete_document(services().alerts, rule_id, NOUN)).doc)

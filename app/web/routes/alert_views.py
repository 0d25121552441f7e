"""The alert list, the transition history, acknowledge and silence, over HTTP.

Viewers read what is firing and the history; editors acknowledge; admins
silence. Everything is scoped: a token limited to some devices sees (and
may act on) only those devices' rules, here and on the stream (the
``alert_ack`` / ``alert_silence`` events are on the device's topic).
"""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, Response, render_template, request

from app.alerts.channels import public
from app.alerts.marks import HistoryQuery, SilenceBody
from app.auth.access import ADMIN, ANNOTATE, READ
from app.auth.guard import current_identity, may
from app.documents.versioned import check_id
from app.errors import BadRequest, NotFound
from app.services import services
from app.validation import RFC3339_PATTERN, parse_model, parse_ts
from app.web.bodies import int_arg, json_or_form, optional_body, slug_arg
from app.web.responses import NO_STORE, json_response
from app.web.routes.page_context import page_settings
from app.web.routing import BODY_ERRORS, DEVICE, DOC_ID, Param, route

bp = Blueprint("alert_views", __name__)

# A history entry's id (a stream id, as `next` gives it): anything else would make Redis refuse the range (a 500).
HISTORY_ID = r"[1-9][0-9]{0,18}(?:-[0-9]{1,19})?"

CHANNEL_LOG_SHOWN = 5

RULE = Param("rule_id", "path", description="an alert rule id", required=True, schema=DOC_ID)
# parse_ts's times (RFC 3339 or epoch ms, 2000 to 2200); empty: none.
_EPOCH_MS = r"(?:9[5-9][0-9]{10}|[1-6][0-9]{12}|7[01][0-9]{11}|72[0-4][0-9]{10})"
TS_ARG = {"pattern": rf"^(?:{_EPOCH_MS}|{RFC3339_PATTERN.strip('^$')})?$"}
HISTORY_PARAMS = (
    Param("rule", description="only this rule's transitions", schema={"pattern": r"^[A-Za-z0-9_-]{0,64}$"}),
    DEVICE,
    Param("from", description="RFC 3339 or epoch ms: transitions at or after", schema=TS_ARG),
    Param("to", description="RFC 3339 or epoch ms: transitions at or before", schema=TS_ARG),
    Param(
        "limit",
        description="at most this many (1-500, default 100)",
        type="integer",
        schema={"minimum": 1, "maximum": 500},
    ),
    Param(
        "before",
        description="the previous answer's `next`: continue with older transitions",
        schema={"pattern": rf"^(?:{HISTORY_ID})?$"},
    ),
)


async def _visible_rule(rule_id: str) -> dict[str, Any]:
    rule = await services().alerts.get(check_id(rule_id, "alert rule"))
    if rule is None or rule.get("deleted") or not current_identity().sees_device(rule["device"]):
        raise NotFound(f"no alert rule {rule_id!r}")
    return rule


async def _firing() -> tuple[list[dict[str, Any]], str]:
    svc = services()
    rules, cursor = await svc.alerts.rules()
    acks, silences = await svc.alerting.marks.marks()
    who = current_identity()
    out = []
    for rule in rules:
        state = rule.get("state") or {}
        if state.get("state") != "firing" or rule.get("enabled") is False or not who.sees_device(rule["device"]):
            continue
        out.append(
            {
                "rule_id": rule["id"],
                "since": state.get("since"),
                "value": state.get("last_value"),
                "ack": acks.get(rule["id"]),
                "silence": silences.get(rule["id"]),
                "rule": rule,
            }
        )
    out.sort(key=lambda f: (f["since"] or 0, f["rule_id"]))
    return out, cursor


async def _panel() -> dict[str, Any]:
    firing, cursor = await _firing()
    alerting = services().alerting
    transitions, _ = await alerting.marks.history(HistoryQuery(limit=50), current_identity().sees_device)
    channels = []
    if may("rules"):  # channels (and their URLs) are for admins only
        for channel in await alerting.channels.all():
            channels.append(
                {**public(channel), "log": (await alerting.channels.log(channel["id"]))[:CHANNEL_LOG_SHOWN]}
            )
    return {"firing": firing, "transitions": transitions, "channels": channels, "cursor": cursor}


@route(bp, "GET", "/alerts", access=READ, summary="The alerts page (HTML)", tag="pages", ok_type="text/html")
async def page() -> str:
    svc = services()
    cursor = await svc.log.head()  # first: the panel below is at least this new
    panel = await _panel()
    return await render_template("alerts.html", **{**panel, "cursor": cursor}, room="alerts", page=page_settings(svc))


@route(
    bp, "GET", "/alerts/panel", access=READ, summary="The alerts page's panel (htmx)", tag="pages", ok_type="text/html"
)
async def panel() -> str:
    return await render_template("_alerts_panel.html", **await _panel())


@route(
    bp,
    "GET",
    "/api/alerts/firing",
    access=READ,
    summary="What is firing now",
    tag="alerts",
    description="Every enabled rule in state firing that the caller may see: since when, the last value, its "
    "acknowledgement (who, when) and silence (until, by), oldest firing first.",
)
async def firing() -> Response:
    found, cursor = await _firing()
    return json_response({"firing": found, "cursor": cursor}, headers=NO_STORE)


def _time(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_ts(raw)
    except ValueError as exc:
        raise BadRequest(f"query parameter {name!r}: {exc}", code="bad_query") from None


@route(
    bp,
    "GET",
    "/api/alerts/history",
    access=READ,
    summary="Alert transitions, newest first",
    tag="alerts",
    description="Bounded (LIVEDASH_ALERT_HISTORY_MAXLEN transitions kept). `next` continues with older ones "
    "(as `before`); null when there are none in the range.",
    params=HISTORY_PARAMS,
    errors=(400, 404),
)
async def history() -> Response:
    before = request.args.get("before") or None
    if before is not None and not re.fullmatch(HISTORY_ID, before):
        raise BadRequest("query parameter 'before' must be a history id (the previous answer's next)", code="bad_query")
    rule = request.args.get("rule") or None
    query = HistoryQuery(
        rule=check_id(rule, "alert rule") if rule else None,
        device=slug_arg("device"),
        start=_time("from"),
        end=_time("to"),
        limit=int_arg("limit", 100, 1, 500),
        before=before,
    )
    found, following = await services().alerting.marks.history(query, current_identity().sees_device)
    return json_response({"transitions": found, "next": following}, headers=NO_STORE)


@route(
    bp,
    "POST",
    "/api/alerts/rules/<rule_id>/ack",
    access=ANNOTATE,
    summary="Acknowledge a firing alert",
    tag="alerts",
    description="Records who and when (from the caller's identity) until the rule's next transition; an "
    "`alert_ack` event tells everyone. 409 not_firing when the rule is not firing. A body, if any, is ignored.",
    params=(RULE,),
    errors=(400, 404, 409, 415),
)
async def ack(rule_id: str) -> Response:
    await optional_body()
    await _visible_rule(rule_id)
    done = await services().alerting.marks.ack(rule_id, current_identity().actor())
    return json_response(done)


@route(
    bp,
    "POST",
    "/api/alerts/rules/<rule_id>/silence",
    access=ADMIN,
    summary="Silence a rule until a time or for a duration",
    tag="alerts",
    description="Body: until (RFC 3339 or epoch ms) or duration (90m, 2h, or seconds), at most 30 days; reason. "
    "While silenced, transitions are still evaluated and sent as events (silenced: true) but not notified.",
    params=(RULE,),
    body="SilenceBody",
    errors=(*BODY_ERRORS, 404),
)
async def silence(rule_id: str) -> Response:
    body, _ = await json_or_form()
    data = parse_model(SilenceBody, body)
    await _visible_rule(rule_id)
    return json_response(await services().alerting.marks.silence(rule_id, data, current_identity().actor()))


@route(
    bp,
    "POST",
    "/api/alerts/rules/<rule_id>/silence/delete",
    access=ADMIN,
    summary="End a rule's silence",
    tag="alerts",
    description="A body, if any, is ignored.",
    params=(RULE,),
    errors=(400, 404, 415),
)
async def unsilence(rule_id: str) -> Response:
    await optional_body()
    await _visible_rule(rule_id)
    return json_response(await services().alerting.marks.unsilence(rule_id, current_identity().actor()))

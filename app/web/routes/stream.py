"""``GET /api/stream``: the Server-Sent-Events view of the event log.

A stream starts with a ``retry:`` hint (jittered per connection) and a
``ready`` event whose id is where it starts, so even a client that saw no
event yet resumes from the right place. With ``Last-Event-ID`` (header) or
``last_event_id`` (query) it first replays what was missed from the log, or
sends ``reset`` when that is older than the kept history. Then it follows the
hub: everything pending is written as one chunk (``app/events/drain.py``
writes the stream; this module decides whether it may open). A named
``ping`` event (and a comment) goes out every keep-alive interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, request

from app.auth import tickets
from app.auth.access import READ, Identity
from app.auth.guard import current_identity, scoped_topics
from app.errors import BadRequest, Unavailable
from app.events.drain import event_stream
from app.events.log import Resume
from app.events.topics import TopicFilter
from app.services import Services, services
from app.web.bodies import optional_body, topic_filter
from app.web.routing import TOPICS, Param, route

bp = Blueprint("stream", __name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}

LOG_EVENT_TYPES = ("metric", "annotation", "alert_rule", "alert", "presence")
CONTROL_EVENT_TYPES = ("ready", "reset", "ping", "status", "bye", "reauth", "skip")

DESCRIPTION = f"""Server-Sent Events: the live view of the event log.

Each log event is one SSE message: `id:` the event id, `event:` its type, `data:`
the Event object as JSON (`format=json`, default) or a rendered HTML fragment
(`format=html`, for htmx).

Log event types: {", ".join(f"`{t}`" for t in LOG_EVENT_TYPES)}.

Control events (not in the log): `ready` (first, `data: {{"cursor"}}`, its id is
where the stream starts), `reset` (the Last-Event-ID is older than the kept log,
or the log was lost: re-fetch snapshots, then continue), `ping` (every keep-alive
interval, `data: {{"ts"}}`), `status` (`{{"state": "stale"|"live"}}` while storage
is unreachable and back), `bye` (the server is shutting down, or the credential
was revoked; reconnect after the short `retry:`), `reauth` (`{{"expires_at", "renew"}}`:
the browser session ends soon, renew it), `skip` (`{{"skipped", "reason"}}`: a slow
stream's backlog was conflated).

Resume with the `Last-Event-ID` header (or `last_event_id=`): missed events are
replayed first. A stream that stops reading is dropped as a slow consumer and
resumes the same way. At the per-process stream limit the answer is 503 with
Retry-After (use `/api/events`); past the per-token stream limit, 429."""


def _control(kind: str, data: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    payload = {"type": "object", "properties": data, "required": list(required)}
    return {
        "properties": {
            "event": {"const": kind},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": payload},
        }
    }


_STRING, _INT = {"type": "string"}, {"type": "integer"}
# One SSE message (what `schema` of text/event-stream describes in OpenAPI 3.1): its fields, and its data by type.
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {"event": _STRING, "data": _STRING, "id": _STRING, "retry": _INT},
    "oneOf": [
        {
            "properties": {
                "event": {"enum": list(LOG_EVENT_TYPES)},
                # format=json: the Event object; format=html: its rendered fragment (empty when it has none).
                "data": {
                    "anyOf": [
                        {
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": "#/components/schemas/Event"},
                        },
                        {"contentMediaType": "text/html"},
                    ]
                },
            },
            "required": ["id"],
        },
        _control("ready", {"cursor": _STRING}, ("cursor",)),
        _control("reset", {"reason": _STRING, "cursor": _STRING}, ("reason", "cursor")),
        _control("ping", {"ts": _INT}, ("ts",)),
        _control("status", {"state": {"enum": ["stale", "live"]}, "reason": _STRING}, ("state",)),
        _control("bye", {"reason": _STRING}, ("reason",)),
        _control("reauth", {"expires_at": _INT, "renew": _STRING}, ("expires_at", "renew")),
        _control("skip", {"skipped": _INT, "reason": _STRING}, ("skipped", "reason")),
    ],
}


@route(
    bp,
    "GET",
    "/api/stream",
    access=READ,
    summary="Follow the event log (SSE)",
    tag="events",
    description=DESCRIPTION,
    params=(
        TOPICS,
        Param("format", description="json (default) or html", schema={"enum": ["json", "html"]}),
        Param("last_event_id", description="resume after this id (for clients that cannot set headers)"),
        Param("Last-Event-ID", "header", "resume after this id"),
        Param(
            "ticket",
            description="a stream ticket from POST /api/stream/ticket, instead of a header or cookie "
            "(EventSource cannot send headers): single use, short-lived",
        ),
    ),
    ok_type="text/event-stream",
    ok_schema=EVENT_SCHEMA,
    errors=(400, 429),
    extra={"x-event-types": list(LOG_EVENT_TYPES), "x-control-event-types": list(CONTROL_EVENT_TYPES)},
)
async def stream() -> Response:
    svc = services()
    last_id = request.headers.get("Last-Event-ID")
    topics, fmt, resume = await stream_start(svc, current_identity(), request.args, last_id)
    response = Response(
        event_stream(svc, topics, fmt, resume),
        content_type="text/event-stream; charset=utf-8",
        headers=STREAM_HEADERS,
    )
    response.timeout = None  # a stream lives until the client or the server ends it
    return response


async def stream_start(
    svc: Services, identity: Identity, args: Mapping[str, str], last_event_id: str | None
) -> tuple[TopicFilter, str, Resume]:
    """Whether this caller's stream may open (else an ApiError), and its topics, format and resume point.

    Shared by the route and the raw path in front of Quart (``app/web/raw_stream.py``).
    """
    fmt = args.get("format", "json")
    if fmt not in svc.encoders:
        raise BadRequest(f"unknown format {fmt!r}: use one of {sorted(svc.encoders)}", code="bad_query")
    # The requested topics narrowed to the caller's scope (and its stream limit checked).
    topics = scoped_topics(svc, identity, args.get("topics"), stream=True)
    if svc.hub.closing:
        raise Unavailable("this server is shutting down; reconnect", code="shutting_down", headers={"Retry-After": "1"})
    if len(svc.hub.subscriptions) >= svc.settings.max_streams:
        raise Unavailable(
            "this server is at its stream limit; poll /api/events or retry",
            code="at_capacity",
            headers={"Retry-After": "5"},
        )
    last_id = last_event_id or args.get("last_event_id") or None
    return topics, fmt, await svc.log.resume_point(last_id)


@route(
    bp,
    "POST",
    "/api/stream/ticket",
    access=READ,
    summary="A single-use stream ticket for EventSource (pages on other origins)",
    tag="events",
    description="With a credential in a header (a token or a JWT; or a session cookie with X-CSRF-Token): a "
    "signed ticket to open one `GET /api/stream?ticket=...` within `LIVEDASH_STREAM_TICKET_TTL` seconds (60), so "
    "the long-lived credential never goes into a URL. Optional `topics` (JSON or form, a comma list or a list): "
    "the ticket's topics, each within the credential's scope (403 otherwise); absent: whatever the credential "
    "sees. Refused when used after its time, a second time, or after its credential was revoked (401 "
    "`bad_ticket`, `reason` expired / used / revoked / invalid). docs/embed.md.",
    ok=201,
    errors=(400, 403, 415),
)
async def stream_ticket() -> tuple[dict[str, object], int]:
    body, _ = await optional_body()
    raw = body.get("topics") if isinstance(body, dict) else None
    if isinstance(raw, list):
        raw = ",".join(str(t) for t in raw)
    if raw is not None and not isinstance(raw, str):
        raise BadRequest("topics: a comma list of topic patterns, or a list of them", code="bad_topics")
    identity = current_identity()
    settings = services().settings
    topics = tickets.ticket_topics(identity, topic_filter(raw))
    ticket, record = tickets.mint(identity, topics, settings.secret_key or "", settings.stream_ticket_ttl)
    return {
        "ticket": ticket,
        "expires_at": record.expires_at,
        "expires_in": settings.stream_ticket_ttl,
        "topics": list(topics) if topics is not None else None,
        "url": "/api/stream?" + urlencode({"ticket": ticket}),
    }, 201

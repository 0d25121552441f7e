"""Presence: heartbeat, explicit leave, and the per-room snapshot.

``POST /api/presence/leave`` is what a page sends with
``navigator.sendBeacon`` on ``pagehide``; a beacon cannot set headers, so
besides JSON and forms both POSTs accept ``text/plain`` carrying JSON (what
``sendBeacon(url, JSON.stringify(...))`` sends).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from quart import Blueprint, Response, request

from app.auth.access import READ
from app.auth.guard import current_identity, require_room
from app.errors import BadRequest, PayloadTooLarge
from app.presence import ROOM_PATTERN, Heartbeat, Leave, parse_body, room_topic
from app.services import services
from app.web.bodies import json_or_form
from app.web.responses import json_response
from app.web.routing import Param, route

bp = Blueprint("presence", __name__)

# A heartbeat is a few short fields; anything bigger is not one.
MAX_PRESENCE_BODY = 2048
BEACON = (
    f"JSON, a form, or text/plain carrying JSON (what navigator.sendBeacon sends); at most {MAX_PRESENCE_BODY} "
    "bytes (413). A room the credential's scope does not show is a 403."
)


async def presence_body() -> Any:
    # Read (and measure) the body first: clients that send no Content-Length
    # are bounded by MAX_CONTENT_LENGTH, and the parsers below reuse the bytes.
    raw = await request.get_data(as_text=False)
    if len(raw) > MAX_PRESENCE_BODY:
        raise PayloadTooLarge(f"presence bodies are at most {MAX_PRESENCE_BODY} bytes")
    if request.mimetype == "text/plain":
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"malformed JSON: {exc}", code="malformed_json") from None
    body, _is_form = await json_or_form()
    return body


@route(
    bp,
    "POST",
    "/api/presence",
    access=READ,
    summary="Presence heartbeat",
    tag="presence",
    description=BEACON,
    body="Heartbeat",
    errors=(400, 413, 415, 422),
)
async def heartbeat() -> Response:
    svc = services()
    beat = parse_body(Heartbeat, await presence_body())
    require_room(beat.room)
    # Who is present is the caller; the body's `user` only names someone while auth is off (self-declared).
    result = await svc.presence.heartbeat(beat, current_identity().actor(beat.user))
    settings = svc.settings
    return json_response(
        {
            "action": result.action,
            "room": beat.room,
            "topic": room_topic(beat.room),
            "tab": result.tab,
            "id": result.event_id,
            # The page paces itself from these, so tuning needs no JS change.
            "heartbeat_ms": int(settings.presence_heartbeat_interval * 1000),
            "ttl_ms": int(settings.presence_ttl * 1000),
        }
    )


@route(
    bp,
    "POST",
    "/api/presence/leave",
    access=READ,
    summary="Leave a room",
    tag="presence",
    description=BEACON,
    body="Leave",
    errors=(400, 413, 415, 422),
    # Sent with navigator.sendBeacon, which cannot set headers: no CSRF token. Forging one needs the
    # tab's random session id, and only ends that tab's presence early (its next heartbeat restores it).
    csrf_exempt=True,
)
async def leave() -> Response:
    body = parse_body(Leave, await presence_body())
    require_room(body.room)
    event_id = await services().presence.leave(body.room, body.session)
    # Leaving twice (or after expiry) is not an error: the page cannot know.
    return json_response({"left": event_id is not None, "room": body.room, "id": event_id})


@route(
    bp,
    "GET",
    "/api/presence",
    access=READ,
    summary="Who is in a room",
    tag="presence",
    params=(
        Param(
            "room", required=True, description="a room: dashboard, device:pump-1, ...", schema={"pattern": ROOM_PATTERN}
        ),
    ),
    errors=(400,),
)
async def snapshot() -> Response:
    room = request.args.get("room")
    if not room:
        raise BadRequest("query parameter 'room' is required", code="bad_query")
    if not re.fullmatch(ROOM_PATTERN, room):
        raise BadRequest("query parameter 'room' must look like 'dashboard' or 'device:pump-1'", code="bad_query")
    require_room(room)
    return json_response(await services().presence.snapshot(room))

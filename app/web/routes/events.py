"""``GET /api/events``: the polling view of the same event log.

``since`` is the id of the last event the client has (the stream's ids and
these are the same ids); the answer is ``{"events": [...], "cursor": id}``
with events in log order. ``wait`` turns it into a long poll that answers as
soon as a matching event arrives. ``format=html`` adds each event's rendered
fragment as ``html`` (the same fragment as the stream's htmx flavour), so an
htmx page that falls back to polling swaps the very same markup
(static/livedash-htmx.js). An unknown or expired ``since`` gives a
``reset`` marker (an event of type ``reset`` and ``"reset": true``) so the
client re-fetches its snapshot.
"""

from __future__ import annotations

import asyncio

import orjson
from quart import Blueprint, Response, request

from app.auth.access import READ
from app.auth.guard import visible_topics
from app.errors import BadRequest
from app.events.event import Event, parse_event_id
from app.services import services
from app.web.bodies import float_arg, int_arg
from app.web.routing import TOPICS, FromSettings, Param, route

bp = Blueprint("events", __name__)


def _answer(events: list[bytes], cursor: str, reset: str | None = None) -> Response:
    body = b'{"events":[' + b",".join(events) + b'],"cursor":' + orjson.dumps(cursor)
    if reset is not None:
        body += b',"reset":true'
    body += b"}"
    return Response(body, content_type="application/json", headers={"Cache-Control": "no-store"})


@route(
    bp,
    "GET",
    "/api/events",
    access=READ,
    summary="Poll the event log",
    tag="events",
    description="The polling view of the same log; `wait` makes it a long poll. An unknown or expired `since` "
    "answers `reset: true` with a `reset` event, never an error.",
    params=(
        Param("since", description="id of the last event you have"),
        TOPICS,
        Param(
            "format",
            description="json (default), or html: each event also carries its rendered fragment as `html` "
            "(as the stream's htmx flavour), for htmx pages that poll",
            schema={"enum": ["json", "html"]},
        ),
        Param(
            "wait",
            description="seconds to wait for an event (long poll), at most LIVEDASH_LONG_POLL_MAX_WAIT",
            type="number",
            schema={"minimum": 0, "maximum": FromSettings("long_poll_max_wait")},
        ),
        Param(
            "limit",
            description="most events to return, at most LIVEDASH_POLL_PAGE_SIZE",
            type="integer",
            schema={"minimum": 1, "maximum": FromSettings("poll_page_size")},
        ),
    ),
    ok_schema="EventPage",
    errors=(400,),
)
async def poll() -> Response:
    svc = services()
    settings = svc.settings
    topics = visible_topics(request.args.get("topics"))  # narrowed to the caller's scope
    wait = float_arg("wait", 0.0, 0.0, settings.long_poll_max_wait)
    limit = int_arg("limit", settings.poll_page_size, 1, settings.poll_page_size)
    since = request.args.get("since") or None
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "html"):
        raise BadRequest(f"unknown format {fmt!r}: use one of ['html', 'json']", code="bad_query")
    encode = svc.fragments.json if fmt == "html" and svc.fragments is not None else Event.json

    resume = await svc.log.resume_point(since)
    if resume.reset is not None:
        marker = {
            "id": resume.after,
            "type": "reset",
            "topic": "",
            "ts": (parse_event_id(resume.after) or (0, 0))[0],
            "data": {"reason": resume.reset, "cursor": resume.after},
        }
        return _answer([orjson.dumps(marker)], resume.after, resume.reset)

    events, cursor = await svc.log.scan(resume.after, topics, limit)
    if events or wait <= 0:
        return _answer([encode(ev) for ev in events], cursor)

    # Long poll: subscribe first, then look again, so nothing falls in between.
    sub = svc.hub.subscribe(topics, cancel_on_overflow=False)
    try:
        events, cursor = await svc.log.scan(cursor, topics, limit)
        if events:
            return _answer([encode(ev) for ev in events], cursor)
        upto = parse_event_id(cursor) or (0, 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        fresh: list[Event] = []
        while not fresh and not sub.closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(sub.wait(), remaining)
            except TimeoutError:
                break
            fresh = [item for item in sub.drain() if isinstance(item, Event) and item.key > upto][:limit]
        if fresh:
            cursor = fresh[-1].id
        return _answer([encode(ev) for ev in fresh], cursor)
    finally:
        svc.hub.unsubscribe(sub)

"""``GET /api/stream``: the Server-Sent-Events view of the event log.

A stream starts with a ``retry:`` hint (jittered per connection) and a
``ready`` event whose id is where it starts, so even a client that saw no
event yet resumes from the right place. With ``Last-Event-ID`` (header) or
``last_event_id`` (query) it first replays what was missed from the log, or
sends ``reset`` when that is older than the kept history. Then it follows the
broker: everything pending is written as one chunk. A named ``ping`` event
(and a comment) goes out every keep-alive interval.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Blueprint, Response, request

from app.auth.access import READ
from app.auth.guard import visible_topics
from app.errors import BadRequest, Unavailable
from app.events.conflation import Skip
from app.events.event import Event, parse_event_id
from app.events.hub import Reset
from app.events.log import Resume
from app.events.sse import control_frame, jittered_retry
from app.events.topics import TopicFilter
from app.ops.logs import stream_ended
from app.services import Services, services
from app.web.routing import TOPICS, Param, route

bp = Blueprint("stream", __name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}

LOG_EVENT_TYPES = ("metric", "annotation", "alert_rule", "alert", "presence")
CONTROL_EVENT_TYPES = ("ready", "reset", "ping", "status", "bye")

DESCRIPTION = f"""Server-Sent Events: the live view of the event log.

Each log event is one SSE message: `id:` the event id, `event:` its type, `data:`
the Event object as JSON (`format=json`, default) or a rendered HTML fragment
(`format=html`, for htmx).

Log event types: {", ".join(f"`{t}`" for t in LOG_EVENT_TYPES)}.

Control events (not in the log): `ready` (first, `data: {{"cursor"}}`, its id is
where the stream starts), `reset` (the Last-Event-ID is older than the kept log,
or the log was lost: re-fetch snapshots, then continue), `ping` (every keep-alive
interval, `data: {{"ts"}}`), `status` (`{{"state": "stale"|"live"}}` while storage
is unreachable and back), `bye` (the server is shutting down; reconnect after the
short `retry:`).

Resume with the `Last-Event-ID` header (or `last_event_id=`): missed events are
replayed first. A stream that stops reading is dropped as a slow consumer and
resumes the same way. At the per-process stream limit the answer is 503 with
Retry-After (use `/api/events`)."""


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
        Param("format", description="json (default) or html"),
        Param("last_event_id", description="resume after this id (for clients that cannot set headers)"),
        Param("Last-Event-ID", "header", "resume after this id"),
    ),
    ok_type="text/event-stream",
    errors=(400, 503),
    extra={"x-event-types": list(LOG_EVENT_TYPES), "x-control-event-types": list(CONTROL_EVENT_TYPES)},
)
async def stream() -> Response:
    svc = services()
    fmt = request.args.get("format", "json")
    if fmt not in svc.encoders:
        raise BadRequest(f"unknown format {fmt!r}: use one of {sorted(svc.encoders)}", code="bad_query")
    # The requested topics narrowed to the caller's scope (and its stream limit checked).
    topics = visible_topics(request.args.get("topics"), stream=True)
    if svc.hub.closing:
        raise Unavailable("this server is shutting down; reconnect", code="shutting_down", headers={"Retry-After": "1"})
    if len(svc.hub.subscriptions) >= svc.settings.max_streams:
        raise Unavailable(
            "this server is at its stream limit; poll /api/events or retry",
            code="at_capacity",
            headers={"Retry-After": "5"},
        )
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or None
    resume = await svc.log.resume_point(last_id)
    response = Response(
        event_stream(svc, topics, fmt, resume),
        content_type="text/event-stream; charset=utf-8",
        headers=STREAM_HEADERS,
    )
    response.timeout = None  # a stream lives until the client or the server ends it
    return response


async def event_stream(svc: Services, topics: TopicFilter, fmt: str, resume: Resume) -> AsyncIterator[bytes]:
    settings = svc.settings
    encode = svc.encoders[fmt]
    hub = svc.hub
    retry = jittered_retry(settings.retry_ms, settings.retry_jitter_ms)
    if resume.reset:
        yield control_frame("reset", {"reason": resume.reset, "cursor": resume.after}, resume.after, retry)
    else:
        yield control_frame("ready", {"cursor": resume.after}, resume.after, retry)

    # Replay from the log page by page, then subscribe and catch up once more:
    # the live queue only has to hold what arrives during that last read.
    sent = 0
    log = LogReplay(svc, topics, fmt, resume.after)
    async for chunk in log.chunks():
        sent += len(chunk)
        yield chunk
    sub = hub.subscribe(topics)
    try:
        async for chunk in log.chunks():
            sent += len(chunk)
            yield chunk
        upto = parse_event_id(log.cursor) or (0, 0)
        while True:
            await sub.wait()
            if sub.closed:
                break
            parts = []
            for item in sub.drain():
                if isinstance(item, Event):
                    if item.key <= upto:
                        continue
                    upto = item.key
                    parts.append(item.frame(fmt, encode))
                elif isinstance(item, Skip):
                    parts.append(item.frame())
                elif isinstance(item, Reset):
                    upto = item.key
                    parts.append(item.frame)
                else:
                    parts.append(item)
            if parts:
                chunk = b"".join(parts)
                sent += len(chunk)
                yield chunk
        if sub.reason == "shutdown":
            # A short retry: the client should come straight back (to another worker or the new release).
            yield control_frame("bye", {"reason": "shutdown"}, retry=jittered_retry(250, 1000))
    finally:
        hub.unsubscribe(sub)
        stream_ended(sub.reason, sent)  # the close reason and size for the stream's log line


class LogReplay:
    """Matching events after ``cursor``, read from the log a page at a time."""

    def __init__(self, svc: Services, topics: TopicFilter, fmt: str, cursor: str) -> None:
        self.svc, self.topics, self.fmt, self.cursor = svc, topics, fmt, cursor

    async def chunks(self) -> AsyncIterator[bytes]:
        encode = self.svc.encoders[self.fmt]
        page = self.svc.settings.replay_page_size
        while True:
            batch = await self.svc.log.read_after(self.cursor, page)
            if not batch:
                return
            self.cursor = batch[-1].id
            chunk = b"".join(ev.frame(self.fmt, encode) for ev in batch if self.topics.matches(ev.topic))
            if chunk:
                yield chunk
            if len(batch) < page:
                return

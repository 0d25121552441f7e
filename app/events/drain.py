"""One stream's life, from its first frame to its last: replay, then follow the hub.

``event_stream`` is the body of an SSE response (``GET /api/stream`` hands
it to Quart as the response iterator). It writes the ``retry:`` hint and
``ready`` (or ``reset``), replays what the client missed from the log a page
at a time, subscribes to the hub, catches up once more (the live queue only
has to hold what arrives during that last read) and then drains the
subscription: everything pending goes out as one chunk, each event's bytes
built once per format and shared by every stream. It ends when the hub closes
the subscription (shutdown: a ``bye`` with a short ``retry:``; a slow
consumer; a revoked credential) or the client goes away.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from app.events.conflation import Skip
from app.events.event import Event, parse_event_id
from app.events.hub import Reset
from app.events.log import Resume
from app.events.sse import control_frame, jittered_retry
from app.events.topics import TopicFilter
from app.ops.logs import stream_ended
from app.services import Services


async def event_stream(svc: Services, topics: TopicFilter, fmt: str, resume: Resume) -> AsyncGenerator[bytes, None]:
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
    if resume.replays:
        async for chunk in log.chunks():
            sent += len(chunk)
            yield chunk
    sub = hub.subscribe(topics)
    if hub.closing:
        # A shutdown began while this stream was replaying: it missed end_streams(), so end it here.
        sub.close("shutdown")
    try:
        # Nothing to catch up on when the hub has dispatched nothing past our cursor: every later event
        # reaches the subscription (those up to the cursor are skipped below). A fresh stream in a
        # reconnect storm then costs no read of the log at all.
        if not hub.follows_from(parse_event_id(log.cursor)):
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

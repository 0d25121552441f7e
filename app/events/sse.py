"""Server-Sent-Events framing.

Frames are built with ``sse_starlette``'s ``ServerSentEvent``, which splits any
line break in the data into separate ``data:`` lines and strips them from ids
and event names, so no payload can inject a field or a second event.
"""

from __future__ import annotations

import random
import time

import orjson
from sse_starlette.event import ServerSentEvent

from app.events.event import Event

SEP = "\n"


def frame(
    data: str | None = None,
    *,
    event: str | None = None,
    event_id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    return ServerSentEvent(data, event=event, id=event_id, retry=retry, comment=comment, sep=SEP).encode()


def json_frame(ev: Event) -> bytes:
    """The JSON flavour: ``data:`` is the whole ``{id, type, topic, ts, data}`` object.

    Serialised JSON has no raw line breaks (they are escaped inside strings),
    so the fields are concatenated directly; anything that does hold a line
    break (a hand-written log entry, an odd type name) goes through the
    general, splitting ``frame`` instead. The bytes are the same either way.
    """
    data = ev.json()
    # ev.id is a validated stream id; the type and the JSON are checked here.
    if "\n" in ev.type or "\r" in ev.type or b"\n" in data or b"\r" in data:
        return frame(data.decode(), event=ev.type, event_id=ev.id)
    return f"id: {ev.id}\nevent: {ev.type}\ndata: ".encode() + data + b"\n\n"


def control_frame(event: str, data: dict[str, object], event_id: str | None = None, retry: int | None = None) -> bytes:
    """A stream-only event (ready, reset, ping, bye) that is not in the log."""
    return frame(orjson.dumps(data).decode(), event=event, event_id=event_id, retry=retry)


def jittered_retry(base_ms: int, jitter_ms: int) -> int:
    """A ``retry:`` value with per-connection jitter, so a restart does not bring every client back at once."""
    return base_ms + random.randint(0, jitter_ms)


def ping_frame() -> bytes:
    """Keep-alive: a comment for proxies plus a named event a page's watchdog can see."""
    # One block: a comment alone would be a separate (empty) event to some parsers.
    return frame(orjson.dumps({"ts": int(time.time() * 1000)}).decode(), event="ping", comment="keep-alive")

"""The event log: one Redis Stream, bounded by ``MAXLEN ~``.

Appends happen inside the Lua scripts that store the change the event
describes (so a change and its event are one atomic step) or through
``append`` for changes that have no other state. Reads serve replay on resume
and the polling view. ``resume_point`` decides whether a client's last id can
be resumed from or needs a ``reset``.

The epoch (``scripts/epoch.lua``) names the dataset: a Redis that lost its
data gets a new epoch whose floor is "now", so ids from before the loss are
recognised as foreign and answered with ``reset`` rather than a silent gap.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.events.event import ZERO_ID, Event, EventKey, format_event_id, parse_event_id
from app.events.topics import TopicFilter
from app.storage import lua as scripts
from app.storage.batching import SharedRead

# What redis-py returns for XRANGE / one stream of XREAD (bytes, not decoded).
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a client resumes: ``reset`` is set when its id cannot be honoured; ``replays`` when it is
    behind the log's head as read (its missed events are replayed before it follows the hub)."""

    after: str
    reset: str | None = None
    replays: bool = False


@dataclass(frozen=True, slots=True)
class Epoch:
    token: str
    floor: EventKey


class EventLog:
    def __init__(self, redis: Redis, key: str, maxlen: int, epoch_key: str | None = None) -> None:
        self.redis = redis
        self.key = key
        self.maxlen = maxlen
        self.epoch_key = epoch_key or f"{key}:epoch"
        self._epoch_script = scripts.load(redis, "epoch")
        # Concurrent stream opens (a reconnect storm) share one read of the log's state.
        self._state = SharedRead(self._read_state)

    async def epoch(self) -> Epoch:
        """This dataset's epoch, created on first use (or after the data was lost)."""
        token, floor = await self._epoch_script(keys=[self.epoch_key, self.key], args=[uuid.uuid4().hex])
        return Epoch(_text(token), parse_event_id(_text(floor)) or (0, 0))

    async def follow(self, after: str, count: int, block_ms: int) -> tuple[StreamEntries, str | None]:
        """Entries after ``after`` (waiting up to ``block_ms``) and the epoch token read right after them.

        One round trip: XREAD BLOCK and HGET pipelined on one connection, so
        Redis answers the HGET just after the XREAD, whatever woke it. A token
        that differs from the reader's (or is gone: the data was lost and
        nobody has named the new dataset yet) means these entries may belong
        to a new dataset and must not be delivered as a continuation.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.xread({self.key: after}, count=count, block=block_ms)
        pipe.hget(self.epoch_key, "token")
        response, token = await pipe.execute()
        entries: StreamEntries = []
        for _stream, stream_entries in cast(list[tuple[bytes, StreamEntries]], response or []):
            entries.extend(stream_entries)
        return entries, None if token is None else _text(token)

    async def append(self, type_: str, topic: str, data: object) -> str:
        event_id = await self.redis.xadd(
            self.key,
            {"type": type_, "topic": topic, "data": orjson.dumps(data)},
            maxlen=self.maxlen,
            approximate=True,
        )
        return event_id.decode() if isinstance(event_id, bytes) else str(event_id)

    async def head(self) -> str:
        """The id of the newest event, or ``0-0`` for an empty log."""
        newest = await self.redis.xrevrange(self.key, count=1)
        if not newest:
            return ZERO_ID
        event_id = newest[0][0]
        return event_id.decode() if isinstance(event_id, bytes) else str(event_id)

    async def read_after(self, after: str, count: int) -> list[Event]:
        """Up to ``count`` events with ids strictly greater than ``after``."""
        entries = cast(StreamEntries, await self.redis.xrange(self.key, min="(" + after, max="+", count=count))
        return [Event.from_stream(eid, fields) for eid, fields in entries]

    async def scan(self, after: str, topics: TopicFilter, count: int) -> tuple[list[Event], str]:
        """Matching events after ``after`` and the cursor past everything scanned."""
        batch = await self.read_after(after, count)
        if not batch:
            return [], after
        return [ev for ev in batch if topics.matches(ev.topic)], batch[-1].id

    async def resume_point(self, last_id: str | None) -> Resume:
        """Decide how a client that last saw ``last_id`` continues.

        No id: from the newest event on. ``0`` or ``0-0``: from the start of
        the kept log (never a reset). A bare number ``<ms>`` means ``<ms>-0``,
        as in Redis. An id that is malformed, newer than anything written
        (another engine, or an engine that lost its data), or older than the
        oldest event kept: ``reset``, resuming from the newest event.
        """
        info, epoch = await self._state.get()
        head = info["last"]
        if last_id is None:
            return Resume(after=format_event_id(head))
        wanted = parse_event_id(_complete_id(last_id))
        if wanted is None:
            return Resume(after=format_event_id(head), reset="malformed-id")
        if wanted == (0, 0):
            return Resume(after=ZERO_ID, replays=head > (0, 0))
        if wanted < epoch.floor:
            return Resume(after=format_event_id(head), reset="epoch-changed")
        if wanted > head:
            return Resume(after=format_event_id(head), reset="unknown-id")
        if wanted < info["floor"]:
            return Resume(after=format_event_id(head), reset="expired-id")
        return Resume(after=format_event_id(wanted), replays=wanted < head)

    async def _read_state(self) -> tuple[dict[str, EventKey], Epoch]:
        return await self._info(), await self.epoch()

    async def _info(self) -> dict[str, EventKey]:
        try:
            raw = await self.redis.xinfo_stream(self.key)
        except ResponseError as exc:  # the key does not exist yet
            if "no such key" not in str(exc).lower():
                raise
            return {"last": (0, 0), "floor": (0, 0)}
        # MAXLEN trimming does not move max-deleted-entry-id (only XDEL does),
        # so tell trimming by entries-added > length: then anything older than
        # the first kept entry may have been lost. A client whose id is exactly
        # the last trimmed one gets a needless reset; never a silent gap.
        first = raw.get("first-entry")
        trimmed = int(raw.get("entries-added", 0)) > int(raw.get("length", 0))
        floor = _key(first[0]) if (trimmed and first) else (0, 0)
        return {"last": _key(raw.get("last-generated-id")), "floor": max(floor, _key(raw.get("max-deleted-entry-id")))}


def _complete_id(value: str) -> str:
    """``"0"`` -> ``"0-0"``, ``"1700000000000"`` -> ``"1700000000000-0"`` (Redis's incomplete ids)."""
    value = value.strip()
    return f"{value}-0" if value.isascii() and value.isdigit() and len(value) <= 20 else value


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _key(value: object) -> EventKey:
    text = value.decode() if isinstance(value, bytes) else str(value or ZERO_ID)
    return parse_event_id(text) or (0, 0)

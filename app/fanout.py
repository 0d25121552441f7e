"""Fan-out: one Redis reader per process, many streams.

``Broker`` owns the only task in this process that reads the event log
(``XREAD BLOCK`` on a connection of its own) and hands each event to the
subscriptions whose topic filter matches. A subscription is a bounded queue
plus a wake-up flag; its stream drains everything pending in one go and writes
it as one chunk. An event's bytes are built once per format (``Event.frame``),
not once per subscriber. Keep-alives are one shared frame per tick.

A subscriber that stops reading fills its queue; it is then dropped (its
request task is cancelled, which closes the connection) and resumes by id
when it reconnects. Memory per stream is bounded by ``stream_queue_size``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .eventlog import EventLog, StreamEntries
from .events import Event, EventKey, TopicFilter, parse_event_id
from .sse import control_frame, ping_frame

log = logging.getLogger(__name__)

READ_BLOCK_MS = 5_000
READ_COUNT = 1_000
RECONNECT_MAX_DELAY = 5.0

EPOCH_CHECK_INTERVAL = 2.0


@dataclass(frozen=True, slots=True)
class Reset:
    """The log this stream follows was replaced (Redis lost its data): start over from ``cursor``."""

    cursor: str
    reason: str


# Events, shared control frames (keep-alive, status) and resets.
QueueItem = Event | bytes | Reset


class Subscription:
    """One open stream (or waiting long poll) in this process."""

    __slots__ = ("_wake", "closed", "limit", "queue", "reason", "task", "topics")

    def __init__(self, topics: TopicFilter, limit: int, task: asyncio.Task[object] | None) -> None:
        self.topics = topics
        self.queue: deque[QueueItem] = deque()
        self.limit = limit
        self.closed = False
        self.reason = ""
        self.task = task
        self._wake = asyncio.Event()

    def push(self, item: QueueItem) -> bool:
        """Queue an item; False when the queue is full (the caller drops us)."""
        if len(self.queue) >= self.limit:
            return False
        self.queue.append(item)
        self._wake.set()
        return True

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.reason = reason
            self._wake.set()

    async def wait(self) -> None:
        await self._wake.wait()
        self._wake.clear()

    def drain(self) -> list[QueueItem]:
        items = list(self.queue)
        self.queue.clear()
        return items


class Broker:
    """The process's single event-log reader and its subscribers."""

    def __init__(self, redis: Redis, log_: EventLog, keepalive: float, queue_size: int) -> None:
        self.redis = redis
        self.log = log_
        self.keepalive = keepalive
        self.queue_size = queue_size
        # Read in slices well under a queue's capacity: between two reads every
        # stream gets to drain, so a burst alone never looks like a slow client.
        self.read_count = max(1, min(READ_COUNT, queue_size // 4))
        self.subscriptions: set[Subscription] = set()
        self.last_key: EventKey | None = None
        self.dropped = 0
        self.delivered = 0
        self.healthy = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.epoch: str | None = None
        self._lost = False
        self._epoch_checked = 0.0
        # Set once the process is shutting down: new streams are refused.
        self.closing = False
        self.on_event: list[Callable[[Event], None]] = []

    # --- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        """Start reading from the newest event (or, if Redis is down, as soon as it answers)."""
        try:
            # Settle the epoch before the first request, so no write precedes it.
            await self._check_epoch()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("Redis unavailable at start (%s); the reader will retry", exc)
        self._tasks = [
            asyncio.create_task(self._read_forever(), name="livedash-broker-reader"),
            asyncio.create_task(self._keepalive_forever(), name="livedash-broker-keepalive"),
        ]

    def end_streams(self, reason: str = "shutdown") -> None:
        """Ask every open stream to finish (a deploy is under way)."""
        self.closing = True
        for sub in list(self.subscriptions):
            sub.close(reason)

    async def stop(self) -> None:
        self._stopping = True
        self.end_streams()
        for task in self._tasks:
            task.cancel()
        _done, pending = await asyncio.wait(self._tasks, timeout=0.1)
        if pending:
            # redis-py can swallow a cancellation that lands while it hands a
            # connection back to its pool; breaking the socket ends the read.
            await self.redis.connection_pool.disconnect()
            await asyncio.wait(pending, timeout=5.0)
        self._tasks = []

    # --- subscribers --------------------------------------------------------
    def subscribe(self, topics: TopicFilter, *, cancel_on_overflow: bool = True) -> Subscription:
        task = asyncio.current_task() if cancel_on_overflow else None
        sub = Subscription(topics, self.queue_size, task)
        self.subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscriptions.discard(sub)

    def _drop(self, sub: Subscription) -> None:
        """A subscriber whose queue is full: free its memory and end its connection."""
        self.dropped += 1
        self.subscriptions.discard(sub)
        sub.queue.clear()
        sub.close("slow-consumer")
        # The stream may be stuck in a socket write that never completes; only
        # cancelling its task frees it. The client reconnects and resumes by id.
        if sub.task is not None and not sub.task.done():
            sub.task.cancel()

    def dispatch(self, event: Event) -> None:
        if self.last_key is not None and event.key <= self.last_key:
            return
        self.last_key = event.key
        for hook in self.on_event:
            hook(event)
        for sub in tuple(self.subscriptions):
            if sub.topics.matches(event.topic):
                if sub.push(event):
                    self.delivered += 1
                else:
                    self._drop(sub)

    # --- the reader ---------------------------------------------------------
    async def _read_forever(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                if not self.healthy.is_set():
                    await self.redis.ping()
                    if self.last_key is None:
                        self.last_key = parse_event_id(await self.log.head()) or (0, 0)
                    await self._check_epoch()
                    log.info("event log reader connected; reading after %s-%s", *self.last_key)
                    if self._lost:
                        self.broadcast(control_frame("status", {"state": "live"}))
                        self._lost = False
                    self.healthy.set()
                elif asyncio.get_running_loop().time() - self._epoch_checked > EPOCH_CHECK_INTERVAL:
                    await self._check_epoch()
                assert self.last_key is not None
                after = f"{self.last_key[0]}-{self.last_key[1]}"
                response = await self.redis.xread({self.log.key: after}, count=self.read_count, block=READ_BLOCK_MS)
                delay = 0.1
                for _stream, entries in cast(list[tuple[bytes, StreamEntries]], response or []):
                    for event_id, fields in entries:
                        self.dispatch(Event.from_stream(event_id, fields))
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if self.healthy.is_set():
                    log.warning("event log reader lost Redis: %s", exc)
                    self.healthy.clear()
                    self._lost = True
                    # Streams stay open; tell them what they show is stale until Redis is back.
                    self.broadcast(control_frame("status", {"state": "stale", "reason": "storage-unreachable"}))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
            except Exception:
                log.exception("event log reader failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)

    async def _check_epoch(self) -> None:
        """Notice a Redis that lost its data: every open stream gets ``reset``."""
        self._epoch_checked = asyncio.get_running_loop().time()
        epoch = await self.log.epoch()
        if self.epoch is not None and epoch.token != self.epoch:
            head = await self.log.head()
            log.warning("event log epoch changed (Redis lost its data); resetting %d streams", len(self.subscriptions))
            self.last_key = parse_event_id(head) or (0, 0)
            self.broadcast(Reset(head, "epoch-changed"))
        self.epoch = epoch.token

    def broadcast(self, item: bytes | Reset) -> None:
        """One shared item to every subscriber, whatever its topics."""
        for sub in tuple(self.subscriptions):
            if not sub.push(item):
                self._drop(sub)

    async def _keepalive_forever(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            self.broadcast(ping_frame())

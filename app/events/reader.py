"""The one Redis reader per process: it follows the event log and feeds the hub.

``EventReader`` owns the only task in this process that reads the log
(``XREAD BLOCK`` on a connection of its own, never one per stream) and hands
each event to ``Hub.dispatch``. It also notices the two ways the log can
fail the streams:

- Redis unreachable: the hub is told (``feed_lost``), streams stay open and
  say "stale"; the reader retries with backoff and, once back, reads on
  from the last event it dispatched (``feed_restored``).
- Redis lost its data (a restart without persistence, a FLUSHALL): the log's
  epoch (``epoch.lua``) changed, so every stream gets one shared ``reset`` and
  the reader starts over from the new log's head. The epoch token comes back
  with every read (``EventLog.follow``: the XREAD and an HGET in one round
  trip), and a read blocks at most ``READ_BLOCK_MS``: a loss is noticed within
  about a second, and before any event of the new dataset is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.events.event import Event, EventKey, parse_event_id
from app.events.hub import Hub, run_keepalive
from app.events.log import EventLog

log = logging.getLogger(__name__)

# Also the longest a data loss can go unnoticed while nothing is written.
READ_BLOCK_MS = 1_000
READ_COUNT = 1_000
RECONNECT_MAX_DELAY = 5.0
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class EventReader:
    def __init__(self, hub: Hub, redis: Redis, log_: EventLog, keepalive: float) -> None:
        self.hub = hub
        self.redis = redis
        self.log = log_
        self.keepalive = keepalive
        # Read in slices well under a queue's capacity: between two reads every
        # stream gets to drain, so a burst alone never looks like a slow client.
        self.read_count = max(1, min(READ_COUNT, hub.queue_size // 4))
        self.epoch: str | None = None
        self._lost = False
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._retry_now = asyncio.Event()

    @property
    def healthy(self) -> asyncio.Event:
        return self.hub.healthy

    async def start(self) -> None:
        """Start reading from the newest event (or, if Redis is down, as soon as it answers)."""
        try:
            # Settle the epoch before the first request, so no write precedes it.
            await self._check_epoch()
        except UNAVAILABLE as exc:
            log.warning("Redis unavailable at start (%s); the reader will retry", exc)
        self._tasks = [
            asyncio.create_task(self._read_forever(), name="livedash-event-reader"),
            asyncio.create_task(run_keepalive(self.hub, self.keepalive), name="livedash-keepalive"),
        ]

    def retry_now(self) -> None:
        """Cut a reconnect backoff short (someone saw Redis answer again)."""
        self._retry_now.set()

    async def _backoff(self, delay: float) -> None:
        self._retry_now.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._retry_now.wait(), delay)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(self._tasks, timeout=0.1)
        if pending:
            # redis-py can swallow a cancellation that lands while it hands a
            # connection back to its pool; breaking the socket ends the read.
            await self.redis.connection_pool.disconnect()
            await asyncio.wait(pending, timeout=5.0)
        self._tasks = []

    async def _read_forever(self) -> None:
        delay = 0.1
        hub = self.hub
        while not self._stopping:
            try:
                if not hub.healthy.is_set():
                    await self._connect()
                entries, epoch = await self.log.follow(self._after(), self.read_count, READ_BLOCK_MS)
                delay = 0.1
                if epoch != self.epoch:
                    # The dataset changed under us: these entries are not a continuation.
                    # Every stream gets `reset` (from the new head) instead of them.
                    await self._check_epoch()
                    continue
                for event_id, fields in entries:
                    hub.dispatch(Event.from_stream(event_id, fields))
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as exc:
                if hub.healthy.is_set():
                    log.warning("event log reader lost Redis: %s", exc)
                    self._lost = True
                    hub.feed_lost()
                await self._backoff(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
            except Exception:
                log.exception("event log reader failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)

    async def _connect(self) -> None:
        await self.redis.ping()
        if self.hub.last_key is None:
            self.hub.last_key = parse_event_id(await self.log.head()) or (0, 0)
        await self._check_epoch()
        log.info("event log reader connected; reading after %s", self._after())
        self.hub.feed_restored(was_lost=self._lost)
        self._lost = False

    def _after(self) -> str:
        key: EventKey = self.hub.last_key or (0, 0)
        return f"{key[0]}-{key[1]}"

    async def _check_epoch(self) -> None:
        """Notice a Redis that lost its data: every open stream gets ``reset``."""
        epoch = await self.log.epoch()
        if self.epoch is not None and epoch.token != self.epoch:
            self.hub.restart_from(await self.log.head(), "epoch-changed")
        self.epoch = epoch.token

"""Deliveries: the outbox consumer every process runs.

The script that makes a transition appends one outbox entry per channel of
the rule (a Redis Stream, ``alerts:outbox``), in the same atomic run as the
``alert`` event, so a transition is never without its deliveries and
ingest never waits for a receiver. Every process reads the outbox through
one consumer group: each entry goes to one consumer, which makes the attempt
chain (timeout ``LIVEDASH_WEBHOOK_TIMEOUT``; exponential backoff from
``LIVEDASH_WEBHOOK_BACKOFF`` with jitter, capped; at most
``LIVEDASH_WEBHOOK_ATTEMPTS``), logs every attempt in the channel's log, and
acknowledges (and deletes) the entry when it lands or is given up.

A process that dies holding an entry leaves it pending: after
``LIVEDASH_WEBHOOK_CLAIM_IDLE`` any process takes it over (XAUTOCLAIM) and
carries on from the attempt count kept in Redis. A holder resets the idle
time before every attempt (XCLAIM to itself), so a chain waiting out its
backoff is never taken over while alive. Delivery is therefore at least
once: a process killed after the receiver's 2xx but before its
acknowledgement has the entry sent again, with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from app.alerts.addresses import Network, resolved_refusal
from app.alerts.channels import OUTBOX_GROUP, ChannelStore
from app.alerts.payloads import render
from app.settings import Settings
from app.storage.keyspace import Keys
from app.validation import now_ms

log = logging.getLogger(__name__)

GROUP = OUTBOX_GROUP
READ_BLOCK_MS = 1_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Deliverer:
    def __init__(
        self, redis: Redis, keys: Keys, settings: Settings, channels: ChannelStore, allowed: tuple[Network, ...]
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.channels = channels
        self.allowed = allowed
        self.public_url = settings.public_url
        self.timeout = settings.webhook_timeout
        self.attempts = settings.webhook_attempts
        self.backoff = settings.webhook_backoff
        self.backoff_max = min(settings.webhook_backoff_max, settings.webhook_claim_idle / 2)
        self.claim_idle_ms = int(settings.webhook_claim_idle * 1000)
        self.concurrency = settings.webhook_concurrency
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{random.randrange(1 << 32):08x}"
        self.inflight: set[asyncio.Task[None]] = set()
        self.http: httpx.AsyncClient | None = None
        self.grouped = False

    # --- one attempt ---------------------------------------------------------------

    async def attempt(
        self, channel: dict[str, Any], data: dict[str, Any], key: str, event_id: str
    ) -> tuple[int | None, str | None]:
        """POST once: (status, error). A 2xx has no error."""
        refused = await resolved_refusal(channel["url"], self.allowed)
        if refused is not None:
            return None, f"refused: {refused}"
        body, headers = render(channel, data, key, event_id, self.public_url)
        if self.http is None:
            self.http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        try:
            response = await self.http.post(channel["url"], content=body, headers=headers, timeout=self.timeout)
        except httpx.TimeoutException:
            return None, f"timed out after {self.timeout:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    async def send_test(self, channel: dict[str, Any], actor_name: str | None) -> dict[str, Any]:
        """One attempt now with a made-up transition, logged like any other (``test: true``)."""
        at = now_ms()
        rule = {
            "id": "test",
            "name": "test notification",
            "kind": "threshold",
            "device": "test-device",
            "metric": "test-metric",
            "series": "test-device/test-metric",
            "op": "above",
            "threshold": 0,
            "tags": {},
        }
        data = {"state": "firing", "reason": "test", "value": 1, "ts": at, "at": at, "rule": rule, "test": True}
        key = f"test/{at}-{random.randrange(1 << 32):08x}"
        status, error = await self.attempt(channel, data, key, key)
        entry = {
            "at": at,
            "key": key,
            "event": None,
            "attempt": 1,
            "status": status,
            "error": error,
            "ok": error is None,
            "final": True,
            "test": True,
            "by": actor_name,
        }
        await self.channels.record(channel["id"], entry)
        return entry

    # --- the chain for one outbox entry -------------------------------------------

    async def deliver(self, entry_id: str, fields: dict[str, str]) -> None:
        channel_id, key, event_id = fields.get("channel", ""), fields.get("key", ""), fields.get("event", "")
        channel = await self.channels.get(channel_id)
        if channel is None or not channel.get("enabled", True):
            await self._done(entry_id)  # a deleted or disabled channel gets nothing
            return
        data = orjson.loads(fields.get("data", "{}"))
        while True:
            # Mine again for another claim-idle period, and the attempt counted, before it is made.
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xclaim(self.keys.alert_outbox, GROUP, self.consumer, 0, [entry_id], justid=True)
                pipe.hincrby(self.keys.alert_attempts, entry_id, 1)
                claimed, number = await pipe.execute()
            if not claimed:
                return  # acknowledged meanwhile (by a process that took it over)
            if number > self.attempts:
                await self._done(entry_id)
                return
            status, error = await self.attempt(channel, data, key, event_id)
            final = error is None or number >= self.attempts
            await self.channels.record(
                channel_id,
                {
                    "at": now_ms(),
                    "key": key,
                    "event": event_id,
                    "attempt": number,
                    "status": status,
                    "error": error,
                    "ok": error is None,
                    "final": final,
                },
            )
            if final:
                if error is not None:
                    log.warning(
                        "alert delivery to channel %s given up after %d attempts: %s", channel_id, number, error
                    )
                await self._done(entry_id)
                return
            wait = min(self.backoff_max, self.backoff * 2 ** (number - 1)) * random.uniform(0.5, 1.0)
            await asyncio.sleep(wait)

    async def _done(self, entry_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.alert_outbox, GROUP, entry_id)
            pipe.xdel(self.keys.alert_outbox, entry_id)
            pipe.hdel(self.keys.alert_attempts, entry_id)
            await pipe.execute()

    # --- the loop ------------------------------------------------------------------

    async def ensure_group(self) -> bool:
        """The consumer group, once the outbox exists (the first transition with a channel makes it): True then.

        Nothing is created before: a deployment without notifications has no outbox key at all.
        """
        if self.grouped:
            return True
        if not await self.redis.exists(self.keys.alert_outbox):
            return False
        try:
            await self.redis.xgroup_create(self.keys.alert_outbox, GROUP, id="0")
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.grouped = True
        return True

    def _spawn(self, entry_id: Any, fields: dict[Any, Any]) -> None:
        async def run() -> None:
            try:
                await self.deliver(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
            except RedisError as exc:
                log.warning("alert delivery %s: Redis unavailable (%s); it will be taken over", _text(entry_id), exc)

        task = asyncio.create_task(run(), name="livedash-alert-delivery")
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def take_over(self) -> None:
        """Entries whose holder has been silent for the claim idle time: a dead process's."""
        answer: Any = await self.redis.xautoclaim(
            self.keys.alert_outbox, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=100
        )
        for entry_id, fields in answer[1]:
            if fields:
                self._spawn(entry_id, fields)
            else:  # trimmed away meanwhile
                await self._done(_text(entry_id))

    async def run(self, stop: asyncio.Event) -> None:
        self.http = self.http or httpx.AsyncClient(follow_redirects=False, trust_env=False)
        next_claim = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                try:
                    if not await self.ensure_group():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), READ_BLOCK_MS / 1000)
                        continue
                    if loop.time() >= next_claim:
                        next_claim = loop.time() + self.claim_idle_ms / 4000
                        await self.take_over()
                    free = self.concurrency - len(self.inflight)
                    if free <= 0:
                        # Read no more than can start now: an entry waiting here would age towards a takeover.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 0.05)
                        continue
                    answer: Any = await self.redis.xreadgroup(
                        GROUP, self.consumer, {self.keys.alert_outbox: ">"}, count=free, block=READ_BLOCK_MS
                    )
                    for _stream, entries in answer or []:
                        for entry_id, fields in entries:
                            self._spawn(entry_id, fields)
                except RedisError as exc:
                    if "NOGROUP" in str(exc):  # the outbox was deleted (a flushed database): make it again
                        self.grouped = False
                        continue
                    log.warning("alert deliveries: Redis unavailable (%s); retrying", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            for task in list(self.inflight):
                task.cancel()
            if self.inflight:
                await asyncio.wait(list(self.inflight), timeout=2)
            await self.http.aclose()
            self.http = None

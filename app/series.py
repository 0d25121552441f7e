"""Series: the latest value of each (device, metric) and its recent history.

Writes go through one Lua script (``scripts/ingest_readings.lua``) so the
last-write-wins check, the history append, the ``metric`` event and the
evaluation of alert rules (``scripts/alert_eval.lua``) are one atomic step
per batch; concurrent batches share script runs (``group_commit``), so a
busy server pays one Redis round trip per group of POSTs. Reads return the snapshot together with the event-log
cursor taken in the same MULTI, so a client can stream from exactly there.
"""

from __future__ import annotations

import itertools
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from app.errors import Unprocessable
from app.events.event import ZERO_ID
from app.ingest.readings import Reading
from app.settings import Settings
from app.storage import lua as scripts
from app.storage.group_commit import GroupCommit
from app.storage.keyspace import Keys, device_topic

# Readings per script run when several POSTs are grouped (one big batch alone may exceed it).
GROUP_MAX_READINGS = 5_000


class SeriesStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        history_size: int,
        log_maxlen: int,
        *,
        max_per_device: int = 1_000,
        max_series: int = 100_000,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.history_size = history_size
        self.log_maxlen = log_maxlen
        self.max_per_device = max_per_device
        self.max_series = max_series
        # Each submitted batch is numbered so a script run knows where one ends (limits refuse a batch whole).
        self._batches = itertools.count()
        # Alert evaluation rides in the same script run (alert_eval.lua is a library).
        self._ingest = scripts.load(redis, "alert_eval", "ingest_readings")
        # Concurrent POSTs share script runs; each batch stays whole inside one.
        self._group = GroupCommit(self._store, GROUP_MAX_READINGS)

    @classmethod
    def from_settings(cls, redis: Redis, keys: Keys, settings: Settings) -> SeriesStore:
        return cls(
            redis,
            keys,
            settings.history_size,
            settings.event_log_maxlen,
            max_per_device=settings.max_series_per_device,
            max_series=settings.max_series,
        )

    async def ingest(self, readings: list[Reading]) -> list[str]:
        """Store a validated batch atomically; returns the event ids.

        Raises ``SeriesLimit`` (422, nothing stored) when the batch would create
        more series than a device, or the deployment, may have.
        """
        batch = next(self._batches)
        results = await self._group.submit([(batch, r) for r in readings])
        if results and results[0].startswith("!"):
            raise _limit_error(results[0])
        return results

    async def _store(self, items: list[tuple[int, Reading]]) -> list[str]:
        keys = [
            self.keys.latest,
            self.keys.latest_ts,
            self.keys.events,
            self.keys.alert_rules,
            self.keys.alert_rules_by_series,
            self.keys.alert_state,
            self.keys.series_per_device,
        ]
        sizes: list[int] = []
        previous = None
        for batch, _ in items:
            if batch == previous:
                sizes[-1] += 1
            else:
                sizes.append(1)
                previous = batch
        args: list[Any] = [self.history_size, self.log_maxlen, self.max_per_device, self.max_series, len(sizes), *sizes]
        for _, reading in items:
            sid = reading.series
            stored = orjson.dumps(reading.model_dump(exclude_none=True))
            keys.append(self.keys.history(sid))
            args += [
                sid,
                reading.ts,
                stored,
                orjson.dumps([reading.ts, reading.value]),
                device_topic(reading.device),
                stored[:-1] + b',"series":' + orjson.dumps(sid) + b',"latest":',
                orjson.dumps(reading.value),
                reading.device,
            ]
        results = await self._ingest(keys=keys, args=args)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in results]

    async def latest(
        self, device: str | None = None, metric: str | None = None, tags: TagFilter | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Latest reading of every series (optionally of one device / metric / tag filter), and the cursor."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.latest)
            pipe.xrevrange(self.keys.events, count=1)
            raw, newest = await pipe.execute()
        items = []
        for field, value in raw.items():
            # The id starts with device/ : skip other devices without parsing their JSON.
            if device is not None and not field.startswith(device.encode() + b"/"):
                continue
            reading = orjson.loads(value)
            if (metric is None or reading["metric"] == metric) and matches(reading.get("tags") or {}, tags):
                items.append(reading)
        items.sort(key=lambda r: (r["device"], r["metric"], sorted((r.get("tags") or {}).items())))
        return items, _cursor(newest)

    async def history(self, series_ids: list[str], limit: int) -> tuple[dict[str, list[list[float]]], str]:
        """The newest ``limit`` points of each series, oldest first, and the cursor."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for sid in series_ids:
                pipe.zrange(self.keys.history(sid), -limit, -1)
            pipe.xrevrange(self.keys.events, count=1)
            *points, newest = await pipe.execute()
        return {sid: [orjson.loads(p) for p in pts] for sid, pts in zip(series_ids, points, strict=True)}, _cursor(
            newest
        )

    async def series_ids(self) -> list[str]:
        fields = cast(list[bytes], await self.redis.hkeys(self.keys.latest))
        return sorted(f.decode() for f in fields)


TagFilter = dict[str, set[str]]


def matches(tags: dict[str, str], wanted: TagFilter | None) -> bool:
    """Several values of one key: any of them; different keys: all of them."""
    return not wanted or all(tags.get(key) in values for key, values in wanted.items())


class SeriesLimit(Unprocessable):
    """A batch would create more series than a setting allows; nothing of it was stored."""

    code = "series_limit"


def _limit_error(refusal: str) -> SeriesLimit:
    setting, device, limit = refusal[1:].split("\t")
    env = f"LIVEDASH_{setting.upper()}"
    where = f"device {device!r} may have" if device else "this deployment may have"
    return SeriesLimit(
        f"series limit: {where} at most {limit} series ({env}); the batch was refused, nothing stored",
        body={"limit": env, "max": int(limit), **({"device": device} if device else {})},
    )


def _cursor(newest: list[Any]) -> str:
    if not newest:
        return ZERO_ID
    event_id = newest[0][0]
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)

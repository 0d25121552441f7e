"""Series: the latest value of each (device, metric) and its recent history.

Writes go through one Lua script (``scripts/ingest_readings.lua``) so the
last-write-wins check, the history append, the ``metric`` event and the
evaluation of alert rules (``scripts/alert_eval.lua``) are one atomic step
per batch; concurrent batches share script runs (``group_commit``), so a
busy server pays one Redis round trip per group of POSTs. Reads return the snapshot together with the event-log
cursor taken in the same MULTI, so a client can stream from exactly there.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from redis.asyncio import Redis

from app.events.event import ZERO_ID
from app.ingest.readings import Reading
from app.storage import lua as scripts
from app.storage.group_commit import GroupCommit
from app.storage.keyspace import Keys, device_topic

# Readings per script run when several POSTs are grouped (one big batch alone may exceed it).
GROUP_MAX_READINGS = 5_000


class SeriesStore:
    def __init__(self, redis: Redis, keys: Keys, history_size: int, log_maxlen: int) -> None:
        self.redis = redis
        self.keys = keys
        self.history_size = history_size
        self.log_maxlen = log_maxlen
        # Alert evaluation rides in the same script run (alert_eval.lua is a library).
        self._ingest = scripts.load(redis, "alert_eval", "ingest_readings")
        # Concurrent POSTs share script runs; each batch stays whole inside one.
        self._group = GroupCommit(self._store, GROUP_MAX_READINGS)

    async def ingest(self, readings: list[Reading]) -> list[str]:
        """Store a validated batch atomically; returns the event ids."""
        return await self._group.submit(readings)

    async def _store(self, readings: list[Reading]) -> list[str]:
        keys = [
            self.keys.latest,
            self.keys.latest_ts,
            self.keys.events,
            self.keys.alert_rules,
            self.keys.alert_rules_by_series,
            self.keys.alert_state,
        ]
        args: list[Any] = [self.history_size, self.log_maxlen]
        for reading in readings:
            stored = orjson.dumps(reading.model_dump(exclude_none=True))
            keys.append(self.keys.history(reading.series))
            args += [
                reading.series,
                reading.ts,
                stored,
                orjson.dumps([reading.ts, reading.value]),
                device_topic(reading.device),
                stored[:-1] + b',"latest":',
                orjson.dumps(reading.value),
            ]
        ids = await self._ingest(keys=keys, args=args)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def latest(self, device: str | None = None, metric: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Latest reading of every series (optionally one device / metric), and the cursor."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.latest)
            pipe.xrevrange(self.keys.events, count=1)
            raw, newest = await pipe.execute()
        items = []
        for field, value in raw.items():
            dev, _, met = field.decode().partition("/")
            if (device is None or dev == device) and (metric is None or met == metric):
                items.append(orjson.loads(value))
        items.sort(key=lambda r: (r["device"], r["metric"]))
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


def _cursor(newest: list[Any]) -> str:
    if not newest:
        return ZERO_ID
    event_id = newest[0][0]
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)

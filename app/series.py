"""Series (device + metric + tags): the latest value of each, and its history.

Writes go through one Lua script (``storage/lua/ingest_readings.lua``) so the
series limits, the last-write-wins check, the raw point and the rollup
buckets of every tier, the ``metric`` event and the evaluation of alert rules
(``storage/lua/alert_eval.lua``) are one atomic step per batch; concurrent
batches share script runs (``group_commit``), so a busy server pays one Redis
round trip per group of POSTs. History is laid out as ``storage/rollups.py``
says; reads return the snapshot together with the event-log cursor taken in
the same MULTI, so a client can stream from exactly there.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from operator import itemgetter
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
from app.storage.rollups import Layout, Plan, Row, decode_buckets, decode_raw, merge, plan_step, plan_tier
from app.validation import now_ms

# Readings per script run when several POSTs are grouped (one big batch alone may exceed it).
GROUP_MAX_READINGS = 5_000


class Ingested(list[str]):
    """The ``metric`` event ids of a stored batch, and how many of its readings were too old for any history."""

    too_old: int = 0


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
        raw_retention_ms: int = 6 * 3_600_000,
        tiers: tuple[tuple[int, int], ...] = ((60_000, 7 * 86_400_000), (3_600_000, 400 * 86_400_000)),
        max_future_ms: int = 86_400_000,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.history_size = history_size
        self.log_maxlen = log_maxlen
        self.max_per_device = max_per_device
        self.max_series = max_series
        self.max_future_ms = max_future_ms
        self.layout = Layout.of(keys.prefix, raw_retention_ms, tiers)
        # Each submitted batch is numbered so a script run knows where one ends (limits refuse a batch whole).
        self._batches = itertools.count()
        # Alert evaluation rides in the same script run (alert_eval.lua is a library).
        settings = scripts.constants(
            {
                "maxlen": str(log_maxlen),
                "max_per_device": max_per_device,
                "max_total": max_series,
                **self.layout.script_constants(),
            }
        )
        code = settings + scripts.source("alert_eval") + scripts.source("ingest_readings")
        self._ingest = scripts.Library(redis, "livedash_ingest", "ingest", code)
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
            raw_retention_ms=int(settings.raw_retention * 1000),
            tiers=settings.tiers,
            max_future_ms=int(settings.max_future * 1000),
        )

    async def ingest(self, readings: list[Reading]) -> Ingested:
        """Store a validated batch atomically; returns the event ids (and the count of readings too old to keep).

        Raises ``SeriesLimit`` (422, nothing stored) when the batch would create
        more series than a device, or the deployment, may have.
        """
        batch = next(self._batches)
        results = await self._group.submit([(batch, r) for r in readings])
        if results and results[0].startswith("!"):
            raise _limit_error(results[0])
        ids = Ingested(r[1:] if r[0] == "o" else r for r in results)
        ids.too_old = sum(1 for r in results if r[0] == "o")
        return ids

    async def _store(self, items: list[tuple[int, Reading]]) -> list[str]:
        keys = [
            self.keys.latest,
            self.keys.latest_ts,
            self.keys.events,
            self.keys.alert_rules,
            self.keys.alert_rules_by_series,
            self.keys.alert_state,
            self.keys.series_per_device,
            self.keys.rollup_open,
        ]
        sizes: list[int] = []
        previous = None
        for batch, _ in items:
            if batch == previous:
                sizes[-1] += 1
            else:
                sizes.append(1)
                previous = batch
        args: list[Any] = [self.keys.prefix, now_ms(), len(sizes), *sizes]
        for _, reading in items:
            sid = reading.series
            stored = orjson.dumps(reading.model_dump(exclude_none=True))
            args += [
                sid,
                reading.ts,
                stored,
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
        """The newest ``limit`` raw points of each series, oldest first, and the cursor.

        Raw chunks are read newest first, a few at a time, until each series has
        its points or its raw retention ends, in both formats (rollups.py); a
        series' history sorted set from before the tiers (``history:<series>``)
        is read too, until it expires.
        """
        raw, old_raw = self.layout.raw, self.layout.legacy_raw
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self.keys.latest_ts, series_ids) if series_ids else pipe.echo("")
            for sid in series_ids:
                pipe.zrange(self.keys.history(sid), -limit, -1)
            pipe.xrevrange(self.keys.events, count=1)
            newest_ts, *legacy, newest = await pipe.execute()
        points: dict[str, list[tuple[int, float]]] = {}
        for sid, old in zip(series_ids, legacy, strict=True):
            points[sid] = [(int(p[0]), float(p[1])) for p in map(orjson.loads, old)]
        now = now_ms()
        oldest = now - raw.keep - raw.span
        # The next (older) chunk to read of each series still short of points. The walk starts no later than
        # readings may be dated (LIVEDASH_MAX_FUTURE): one stored before that bound existed, or before it was
        # lowered, would otherwise send it through every empty chunk from its time back to now.
        newest_allowed = now + self.max_future_ms
        todo = {
            sid: raw.chunk_start(min(int(ts), newest_allowed))
            for sid, ts in zip(series_ids, newest_ts or [], strict=False)
            if ts is not None and int(ts) >= oldest
        }
        batch = 1
        while todo:
            wanted = [(sid, chunk - k * raw.span) for sid, chunk in todo.items() for k in range(batch)]
            wanted = [(sid, chunk) for sid, chunk in wanted if chunk + raw.span > oldest]
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid, chunk in wanted:
                    pipe.get(self.layout.raw_key(sid, chunk))
                    pipe.get(self.layout.raw_key(sid, chunk, old_raw))
                chunks = await pipe.execute()
            for (sid, chunk), data, old_data in zip(wanted, chunks[::2], chunks[1::2], strict=True):
                if data:
                    points[sid].extend(decode_raw(chunk, data))
                if old_data:
                    points[sid].extend(decode_raw(chunk, old_data, old_raw.version))
            todo = {
                sid: chunk - batch * raw.span
                for sid, chunk in todo.items()
                if len(points[sid]) < limit and chunk - batch * raw.span + raw.span > oldest
            }
            batch *= 2
        return {sid: _points(pts)[-limit:] for sid, pts in points.items()}, _cursor(newest)

    async def range(
        self, series_ids: list[str], start: int, end: int, points: int, step: int | None, now: int | None = None
    ) -> RangeResult:
        """Each series' history in [start, end]: raw points if they fit in ``points``, else rows of a tier.

        ``step`` (ms) asks for rows of that width (merged from the coarsest tier
        whose step divides it); ``None`` lets the range and ``points`` decide:
        raw points when the raw retention covers ``start`` and every series has
        at most ``points`` of them, else the finest tier that covers the range
        within ``points`` rows. Raises ValueError for a step no tier divides.
        ``now`` is the time relative ranges were taken from (retention is counted from it).
        """
        now = now_ms() if now is None else now
        if step is not None:
            plan = plan_step(self.layout, start, step, now)
            if plan is None:
                steps = ", ".join(str(t.step) for t in self.layout.tiers) or "none configured"
                raise ValueError(f"must be a multiple of a rollup step in ms ({steps})")
            return await self._rows(series_ids, start, end, plan)
        if self.layout.raw.covers(start, now) or not self.layout.tiers:
            result = await self._raw(series_ids, start, end)
            if max((len(p) for p in result.raw.values()), default=0) <= points or not self.layout.tiers:
                return result
        return await self._rows(series_ids, start, end, plan_tier(self.layout, start, end, points, now))

    async def _raw(self, series_ids: list[str], start: int, end: int) -> RangeResult:
        raw, legacy = self.layout.raw, self.layout.legacy_raw
        # Both formats share the raw span, so each chunk is read in both.
        chunks = [(chunk, tier) for chunk in raw.chunks(start, end) for tier in (raw, legacy)]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xrevrange(self.keys.events, count=1)
            for sid in series_ids:
                pipe.zrangebyscore(self.keys.history(sid), start, end)
                for chunk, tier in chunks:
                    pipe.get(self.layout.raw_key(sid, chunk, tier))
            newest, *replies = await pipe.execute()
        result = RangeResult(cursor=_cursor(newest), step=0)
        per = 1 + len(chunks)
        for n, sid in enumerate(series_ids):
            zset, *datas = replies[n * per : (n + 1) * per]
            pts = [(int(p[0]), float(p[1])) for p in map(orjson.loads, zset)]
            for (chunk, tier), data in zip(chunks, datas, strict=True):
                if data:
                    pts.extend(p for p in decode_raw(chunk, data, tier.version) if start <= p[0] <= end)
            result.raw[sid] = _points(pts)
        return result

    async def _rows(self, series_ids: list[str], start: int, end: int, plan: Plan) -> RangeResult:
        tier = plan.tier
        assert tier is not None
        aligned = start - start % plan.step  # the row holding `start` is whole
        # Format 1 chunks (other spans) are read too until they expire; see rollups.py.
        legacy = self.layout.legacy(tier)
        chunks = [(chunk, t) for t in (tier, legacy) for chunk in t.chunks(aligned, end)]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xrevrange(self.keys.events, count=1)
            pipe.hmget(self.keys.rollup_open, series_ids) if series_ids else pipe.echo("")
            for sid in series_ids:
                for chunk, t in chunks:
                    pipe.get(self.layout.tier_key(t, sid, chunk))
            newest, opens, *replies = await pipe.execute()
        result = RangeResult(cursor=_cursor(newest), step=plan.step)
        now = now_ms()
        for n, sid in enumerate(series_ids):
            rows: list[Row] = []
            both = False
            for (chunk, t), data in zip(chunks, replies[n * len(chunks) : (n + 1) * len(chunks)], strict=True):
                if data:
                    both = both or (t is legacy and bool(rows))
                    rows.extend(decode_buckets(t, chunk, data, aligned, end))
            # The newest bucket is open (rollups.py). Its chunk may hold a slot for it too (readings stored
            # before the open buckets existed): the two merge like a late reading.
            open_row = self.layout.decode_open(tier, opens[n]) if opens else None
            if open_row and aligned <= open_row[0] <= end and not tier.expired(open_row[0], now):
                rows.append(open_row)
                both = True
            if both:
                # A bucket written in both formats (across the upgrade), or open, merges like a late reading.
                rows.sort(key=itemgetter(0))
                rows = merge(rows, tier.step)
            result.rows[sid] = merge(rows, plan.step) if plan.step != tier.step else rows
        return result

    async def series_ids(self) -> list[str]:
        fields = cast(list[bytes], await self.redis.hkeys(self.keys.latest))
        return sorted(f.decode() for f in fields)


TagFilter = dict[str, set[str]]


@dataclass
class RangeResult:
    """A range read: raw points per series (``step`` 0) or rows (``step`` ms), and the cursor."""

    cursor: str
    step: int
    raw: dict[str, list[list[float]]] = dataclass_field(default_factory=dict)
    rows: dict[str, list[Row]] = dataclass_field(default_factory=dict)


def _points(pts: list[tuple[int, float]]) -> list[list[float]]:
    """In ts order (arrival order within one ts), an identical point (a retried POST) once."""
    pts.sort(key=itemgetter(0))
    return [[ts, value] for ts, value in dict.fromkeys(pts)]


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

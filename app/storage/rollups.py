"""How series history is laid out in Redis, and how it is read back. No I/O.

The writer is ``lua/ingest_readings.lua``; the two must agree on everything
here (its header says why the layout is this one). In short:

* raw points: per series, one string per chunk of time (``raw:<span>:<series>:<chunk start>``),
  each point 12 bytes appended (``<Id``: ms since the chunk start, the value);
* rollup buckets: per series and tier, one string per chunk of ``span / step``
  buckets, allocated whole when its first reading arrives, each bucket 40 bytes
  at ``(bucket start - chunk start) / step * 40`` (``<ddddII``: min, max, sum,
  last, count, ms from the bucket start to last's ts); count 0 is an empty
  bucket (a gap);
* every chunk key expires (PXAT) at chunk end + retention, so trimming by time
  costs nothing on the write path and no key outlives its data.

A chunk's span (and so its key names) follows the retention: about 1/16 of
it, at most 10 minutes for raw points and 360 buckets for a tier. Changing a
retention therefore starts new keys; the old ones expire on their own.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

RAW = struct.Struct("<Id")
BUCKET = struct.Struct("<ddddII")
MAX_RAW_SPAN_MS = 600_000
MAX_BUCKETS_PER_CHUNK = 360
CHUNKS_PER_RETENTION = 16
COLUMNS = ("ts", "min", "max", "mean", "count", "last")

# A bucket as read: start, min, max, sum, count, last, last's ts.
Row = tuple[int, float, float, float, int, float, int]


@dataclass(frozen=True, slots=True)
class Tier:
    step: int  # ms per bucket; 0 for raw points
    keep: int  # retention, ms
    span: int  # ms per chunk (one key)

    def chunk_start(self, ts: int) -> int:
        return ts - ts % self.span

    def chunks(self, start: int, end: int) -> range:
        """Starts of the chunks holding anything in [start, end]."""
        return range(self.chunk_start(start), end + 1, self.span)

    def covers(self, start: int, now: int) -> bool:
        return start >= now - self.keep


def raw_tier(keep_ms: int) -> Tier:
    return Tier(0, keep_ms, max(1_000, min(MAX_RAW_SPAN_MS, keep_ms // CHUNKS_PER_RETENTION)))


def rollup_tier(step: int, keep_ms: int) -> Tier:
    buckets = max(1, min(MAX_BUCKETS_PER_CHUNK, keep_ms // step // CHUNKS_PER_RETENTION))
    return Tier(step, keep_ms, buckets * step)


@dataclass(frozen=True, slots=True)
class Layout:
    prefix: str
    raw: Tier
    tiers: tuple[Tier, ...]

    @classmethod
    def of(cls, prefix: str, raw_keep_ms: int, tiers: tuple[tuple[int, int], ...]) -> Layout:
        return cls(prefix, raw_tier(raw_keep_ms), tuple(rollup_tier(step, keep) for step, keep in tiers))

    def raw_key(self, series: str, chunk: int) -> str:
        return f"{self.prefix}raw:{self.raw.span}:{series}:{chunk}"

    def tier_key(self, tier: Tier, series: str, chunk: int) -> str:
        return f"{self.prefix}rollup:{tier.step}:{tier.span}:{series}:{chunk}"

    def script_args(self) -> list[Any]:
        """What ingest_readings.lua needs of the layout: the key prefix, raw keep and span, then each tier."""
        args: list[Any] = [self.prefix, self.raw.keep, self.raw.span, len(self.tiers)]
        for tier in self.tiers:
            args += [tier.step, tier.keep, tier.span]
        return args

    @property
    def oldest_kept(self) -> int:
        """How far back (ms before now) any tier keeps anything."""
        return max([self.raw.keep, *(t.keep for t in self.tiers)])


def decode_raw(chunk: int, data: bytes) -> list[tuple[int, float]]:
    return [(chunk + offset, value) for offset, value in RAW.iter_unpack(data[: len(data) - len(data) % RAW.size])]


def decode_buckets(tier: Tier, chunk: int, data: bytes, start: int, end: int) -> list[Row]:
    """The non-empty buckets of a chunk whose start lies in [start, end]."""
    rows: list[Row] = []
    first = max(0, (start - chunk + tier.step - 1) // tier.step) if start > chunk else 0
    last = min(len(data) // BUCKET.size - 1, (end - chunk) // tier.step)
    for index in range(first, last + 1):
        low, high, total, last_value, count, last_offset = BUCKET.unpack_from(data, index * BUCKET.size)
        if count:
            bucket = chunk + index * tier.step
            rows.append((bucket, low, high, total, count, last_value, bucket + last_offset))
    return rows


def merge(rows: list[Row], step: int) -> list[Row]:
    """Rows (in order) into coarser buckets of ``step`` ms: min, max, sum and count add up, last is the newest."""
    out: list[Row] = []
    for row in rows:
        bucket = row[0] - row[0] % step
        if out and out[-1][0] == bucket:
            b = out[-1]
            newer = row[6] >= b[6]
            out[-1] = (
                bucket,
                min(b[1], row[1]),
                max(b[2], row[2]),
                b[3] + row[3],
                b[4] + row[4],
                row[5] if newer else b[5],
                row[6] if newer else b[6],
            )
        else:
            out.append((bucket, *row[1:]))
    return out


def public_row(row: Row) -> list[Any]:
    """``[ts, min, max, mean, count, last]`` (COLUMNS)."""
    return [row[0], row[1], row[2], row[3] / row[4], row[4], row[5]]


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a range is read from: raw points (tier None) or a tier, merged to ``step`` when coarser."""

    tier: Tier | None
    step: int  # ms per row; 0 for raw points


def plan_tier(layout: Layout, start: int, end: int, points: int, now: int) -> Plan:
    """The finest tier that covers [start, end] within ``points`` rows (raw is decided by the caller, by count)."""
    if not layout.tiers:
        return Plan(None, 0)
    covering = [t for t in layout.tiers if t.covers(start, now)] or [layout.tiers[-1]]
    for tier in covering:
        if (end - start) // tier.step + 1 <= points:
            return Plan(tier, tier.step)
    tier = covering[-1]
    factor = math.ceil(((end - start) // tier.step + 1) / points)
    return Plan(tier, tier.step * factor)


def plan_step(layout: Layout, start: int, step: int, now: int) -> Plan | None:
    """An explicit step: the coarsest tier whose step divides it (one that covers the range if any); None if none."""
    dividing = [t for t in layout.tiers if step % t.step == 0]
    if not dividing:
        return None
    covering = [t for t in dividing if t.covers(start, now)]
    return Plan((covering or dividing)[-1], step)

"""How series history is laid out in Redis, and how it is read back. No I/O.

The writer is ``lua/ingest_readings.lua``; the two must agree on everything
here (its header says why the layout is this one). In short, format 2:

* raw points: per series, one string per chunk of time (``raw:v2:<span>:<series>:<chunk start>``),
  each point 11 bytes appended (ms since the chunk start in 3 bytes, the value);
* rollup buckets: per series and tier, one string per chunk of ``span / step``
  buckets (``rollup:v2:<step>:<span>:<series>:<chunk start>``), allocated whole
  when its first reading arrives, each bucket at ``(bucket start - chunk start)
  / step * size``: min, max, sum, last (doubles), count (4 bytes), then the ms
  from the bucket start to last's ts in as few bytes as the step needs (2 for
  minutes, 3 for hours: 38 and 39 bytes a bucket); count 0 is a gap;
* every chunk key expires (PXAT) at chunk end + retention, so trimming by time
  costs nothing on the write path and no key outlives its data;
* each series' newest bucket of each tier is open: it lives in the series'
  field of one hash (``rollup-open``): the tiers' steps (``open_signature``),
  then per tier the bucket's start (a double) and its record, and joins its
  chunk only when a newer bucket opens. A reader merges it with its slot of
  the chunk (``Layout.decode_open``) and ignores it once its chunk would have
  expired.

A chunk's span (and so its key names) follows the retention: raw points about
1/16 of it, at most 10 minutes; a tier 1/48 of it, at most 360 buckets (a
chunk outlives its retention by up to one span, so smaller tier chunks keep
less past it, for ~100 bytes more per key). Changing a retention therefore
starts new keys; the old ones expire on their own.

Compatibility: format 1 (``raw:<span>:…`` with 12-byte points, ``rollup:<step>:<span>:…``
with 40-byte buckets and 1/16-retention chunks) is still read, next to format 2,
until its keys expire (at most the longest retention after the upgrade); only
format 2 is written. A chunk written in both (across the upgrade) is merged as
late readings are. Once every deployment is past that, ``legacy`` can go.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from app.storage.lua import LuaValue

RAW_V1 = struct.Struct("<Id")
# 3 bytes of offset (a chunk spans at most 10 minutes < 2**24 ms: the low 16 bits, the high 8) and the value.
RAW = struct.Struct("<HBd")
BUCKET_V1 = struct.Struct("<ddddII")
MAX_RAW_SPAN_MS = 600_000
MAX_BUCKETS_PER_CHUNK = 360
CHUNKS_PER_RETENTION = 16  # raw points (and format 1 tiers)
TIER_CHUNKS_PER_RETENTION = 48
COLUMNS = ("ts", "min", "max", "mean", "count", "last")
# The offset of a bucket's last reading, by its byte width (Lua struct writes 'I3' as three little-endian bytes).
_OFFSET_FORMAT = {1: "B", 2: "H", 3: "HB", 4: "I"}

# A bucket as read: start, min, max, sum, count, last, last's ts.
Row = tuple[int, float, float, float, int, float, int]


def offset_width(step: int) -> int:
    """Bytes needed for an offset within a bucket of ``step`` ms (0 .. step - 1)."""
    return next(n for n in (1, 2, 3, 4) if step - 1 < 256**n)


@dataclass(frozen=True, slots=True)
class Tier:
    step: int  # ms per bucket; 0 for raw points
    keep: int  # retention, ms
    span: int  # ms per chunk (one key)
    version: int = 2

    def chunk_start(self, ts: int) -> int:
        return ts - ts % self.span

    def chunks(self, start: int, end: int) -> range:
        """Starts of the chunks holding anything in [start, end]."""
        return range(self.chunk_start(start), end + 1, self.span)

    def covers(self, start: int, now: int) -> bool:
        return start >= now - self.keep

    @property
    def width(self) -> int:
        """Bytes of a bucket's offset to its last reading (format 2)."""
        return offset_width(self.step) if self.version == 2 else 4

    @property
    def bucket(self) -> struct.Struct:
        return struct.Struct("<ddddI" + _OFFSET_FORMAT[self.width]) if self.version == 2 else BUCKET_V1

    @property
    def open_bucket(self) -> struct.Struct:
        """An open bucket (format 2): its start, then its record."""
        return struct.Struct("<dddddI" + _OFFSET_FORMAT[self.width])

    def expired(self, start: int, now: int) -> bool:
        """Whether the chunk holding ``start`` is past its retention (Redis has let it expire)."""
        return self.chunk_start(start) + self.span + self.keep <= now


def raw_tier(keep_ms: int, version: int = 2) -> Tier:
    return Tier(0, keep_ms, max(1_000, min(MAX_RAW_SPAN_MS, keep_ms // CHUNKS_PER_RETENTION)), version)


def rollup_tier(step: int, keep_ms: int, version: int = 2) -> Tier:
    if version == 1:
        buckets = max(1, min(MAX_BUCKETS_PER_CHUNK, keep_ms // step // CHUNKS_PER_RETENTION))
    else:
        buckets = max(1, min(MAX_BUCKETS_PER_CHUNK, -(-(keep_ms // step) // TIER_CHUNKS_PER_RETENTION)))
    return Tier(step, keep_ms, buckets * step, version)


@dataclass(frozen=True, slots=True)
class Layout:
    prefix: str
    raw: Tier
    tiers: tuple[Tier, ...]
    legacy_raw: Tier  # format 1, read only
    legacy_tiers: tuple[Tier, ...]

    @classmethod
    def of(cls, prefix: str, raw_keep_ms: int, tiers: tuple[tuple[int, int], ...]) -> Layout:
        return cls(
            prefix,
            raw_tier(raw_keep_ms),
            tuple(rollup_tier(step, keep) for step, keep in tiers),
            raw_tier(raw_keep_ms, 1),
            tuple(rollup_tier(step, keep, 1) for step, keep in tiers),
        )

    def raw_key(self, series: str, chunk: int, tier: Tier | None = None) -> str:
        tier = tier or self.raw
        return f"{self.raw_base(tier)}{series}:{chunk}"

    def raw_base(self, tier: Tier) -> str:
        return f"{self.prefix}{_raw_name(tier)}"

    def tier_key(self, tier: Tier, series: str, chunk: int) -> str:
        return f"{self.tier_base(tier)}{series}:{chunk}"

    def tier_base(self, tier: Tier) -> str:
        return f"{self.prefix}{_tier_name(tier)}"

    def legacy(self, tier: Tier) -> Tier:
        """The format 1 tier of a format 2 one (same step and retention)."""
        return self.legacy_raw if tier.step == 0 else self.legacy_tiers[self.tiers.index(tier)]

    def script_constants(self) -> dict[str, LuaValue]:
        """What ingest_readings.lua knows of the layout, as constants of its text (its header names them).

        Key bases come without the prefix (the script gets that as an
        argument), so every deployment with these settings runs one script.
        """
        records = [f"ddddI4I{t.width}" for t in self.tiers]
        return {
            "raw_keep": self.raw.keep,
            "raw_span": self.raw.span,
            "raw_name": _raw_name(self.raw),
            "open_signature": self.open_signature,
            "ntiers": len(self.tiers),
            "t_step": [t.step for t in self.tiers],
            "t_keep": [t.keep for t in self.tiers],
            "t_span": [t.span for t in self.tiers],
            "t_size": [t.bucket.size for t in self.tiers],
            "t_format": [f"<{r}" for r in records],
            "t_open": [f"<d{r}" for r in records],
            "t_name": [_tier_name(t) for t in self.tiers],
        }

    @property
    def open_signature(self) -> str:
        """What a series' open buckets start with: the tiers they were written for (other tiers ignore them)."""
        return "v2:" + ",".join(str(t.step) for t in self.tiers) + ";"

    def decode_open(self, tier: Tier, value: bytes | None) -> Row | None:
        """A series' open bucket of ``tier`` from its field of the open-buckets hash, if it holds one."""
        signature = self.open_signature.encode()
        if not value or not value.startswith(signature) or tier not in self.tiers:
            return None
        at = len(signature)
        for t in self.tiers:
            if t is tier:
                start, low, high, total, last_value, count, *offset = t.open_bucket.unpack_from(value, at)
                if not count:
                    return None
                bucket = int(start)
                return (bucket, low, high, total, count, last_value, bucket + _offset(offset))
            at += t.open_bucket.size
        return None

    @property
    def oldest_kept(self) -> int:
        """How far back (ms before now) any tier keeps anything."""
        return max([self.raw.keep, *(t.keep for t in self.tiers)])


def _raw_name(tier: Tier) -> str:
    return f"raw:{'v2:' if tier.version == 2 else ''}{tier.span}:"


def _tier_name(tier: Tier) -> str:
    return f"rollup:{'v2:' if tier.version == 2 else ''}{tier.step}:{tier.span}:"


def decode_raw(chunk: int, data: bytes, version: int = 2) -> list[tuple[int, float]]:
    if version == 1:
        usable = data[: len(data) - len(data) % RAW_V1.size]
        return [(chunk + offset, value) for offset, value in RAW_V1.iter_unpack(usable)]
    usable = data[: len(data) - len(data) % RAW.size]
    return [(chunk + (high << 16 | low), value) for low, high, value in RAW.iter_unpack(usable)]


def decode_buckets(tier: Tier, chunk: int, data: bytes, start: int, end: int) -> list[Row]:
    """The non-empty buckets of a chunk whose start lies in [start, end]."""
    rows: list[Row] = []
    record = tier.bucket
    first = max(0, (start - chunk + tier.step - 1) // tier.step) if start > chunk else 0
    last = min(len(data) // record.size - 1, (end - chunk) // tier.step)
    for index in range(first, last + 1):
        low, high, total, last_value, count, *offset = record.unpack_from(data, index * record.size)
        if count:
            bucket = chunk + index * tier.step
            rows.append((bucket, low, high, total, count, last_value, bucket + _offset(offset)))
    return rows


def _offset(parts: list[int]) -> int:
    """A bucket's offset to its last reading, from its one or two unpacked parts (3 bytes: 'HB')."""
    return parts[0] | (parts[1] << 16 if len(parts) == 2 else 0)


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

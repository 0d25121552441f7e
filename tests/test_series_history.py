"""Series history: raw points and rollup tiers kept by time, backfill, late readings, range queries, CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import struct
import time
from collections.abc import Callable
from typing import Any, cast

import pytest
import redis as sync_redis

from app import create_app
from app.ingest.readings import Reading
from app.services import services_of
from app.settings import Settings
from app.storage.lua import Library
from app.storage.rollups import RAW, Layout, decode_buckets, decode_raw

from .conftest import ingest_libraries
from .types import QuartClient
from .waiting import async_wait_until

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def value_at(i: int) -> float:
    return round(20 + 10 * math.sin(i / 37) + (i % 7) * 0.25, 3)


def expected_rows(readings: list[tuple[int, float]], start: int, end: int, step: int) -> list[list[Any]]:
    """[ts, min, max, mean, count, last] per non-empty bucket whose start lies in [start - start % step, end]."""
    buckets: dict[int, list[tuple[int, float]]] = {}
    for ts, value in readings:
        buckets.setdefault(ts - ts % step, []).append((ts, value))
    rows = []
    for bucket in sorted(buckets):
        if start - start % step <= bucket <= end:
            pts = buckets[bucket]
            values = [v for _, v in pts]
            last = max(pts, key=lambda p: p[0])[1]
            rows.append([bucket, min(values), max(values), sum(values) / len(values), len(values), last])
    return rows


async def series_range(client: QuartClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/metrics/series", query_string={"device": "d", "metric": "m", **params})
    assert response.status_code == 200, await response.get_data()
    body = await response.get_json()
    [series] = body["series"]
    return series  # type: ignore[no-any-return]


def assert_rows(got: list[list[Any]], want: list[list[Any]]) -> None:
    assert [r[0] for r in got] == [r[0] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g[1:3] == w[1:3] and g[4:] == w[4:], (g, w)
        assert g[3] == pytest.approx(w[3])


async def test_three_days_backfilled_come_back_at_the_right_tier(client: QuartClient) -> None:
    now = int(time.time() * 1000)
    first = (now - 3 * DAY) - (now - 3 * DAY) % MINUTE
    # One reading a minute for three days, with a two-hour hole on the second day (a gap stays a gap).
    readings = [
        (first + i * MINUTE, value_at(i))
        for i in range(3 * 1440)
        if not (1440 + 300 <= i < 1440 + 420) and first + i * MINUTE <= now
    ]
    body = [{"device": "d", "metric": "m", "value": v, "ts": ts, "unit": "W"} for ts, v in readings]
    response = await client.post("/api/metrics", json=body)
    assert response.status_code == 202
    assert (await response.get_json())["too_old"] == 0

    # 1 h: inside the raw retention, 60 points fit: raw.
    got = await series_range(client, **{"from": "-1h", "to": str(now)})
    assert got["step_ms"] == 0 and got["unit"] == "W" and got["tags"] == {} and "columns" not in got
    assert got["points"] == [[ts, v] for ts, v in readings if now - HOUR <= ts <= now]

    # 24 h: past the raw retention; 1-minute rows would be 1,441 > 1,000 points: hourly rows.
    start = now - DAY
    got = await series_range(client, **{"from": str(start), "to": str(now)})
    assert got["step_ms"] == HOUR and got["columns"] == ["ts", "min", "max", "mean", "count", "last"]
    assert_rows(got["points"], expected_rows(readings, start, now, HOUR))
    # ... and with room for 2,000 points, the 1-minute tier.
    got = await series_range(client, **{"from": str(start), "to": str(now), "points": "2000"})
    assert got["step_ms"] == MINUTE
    assert_rows(got["points"], expected_rows(readings, start, now, MINUTE))

    # 3 d: hourly rows, with the hole on day two absent, not zero.
    start = now - 3 * DAY
    got = await series_range(client, **{"from": str(start), "to": "now"})
    assert got["step_ms"] == HOUR
    want = expected_rows(readings, start, now, HOUR)
    assert_rows(got["points"], want)
    hole = first + 1440 * MINUTE + 300 * MINUTE
    inside = -(-hole // HOUR) * HOUR  # the first hour wholly inside the two-hour hole
    assert inside + HOUR <= hole + 2 * HOUR and inside not in [r[0] for r in got["points"]]

    # An explicit step merges the tier's rows: 6 h rows from hourly buckets.
    got = await series_range(client, **{"from": str(start), "to": "now", "step": "6h"})
    assert got["step_ms"] == 6 * HOUR
    assert_rows(got["points"], expected_rows(readings, start, now, 6 * HOUR))


async def test_late_reading_merges_into_its_bucket(client: QuartClient) -> None:
    now = int(time.time() * 1000)
    bucket = now - 2 * DAY - (now - 2 * DAY) % HOUR  # only the tiers keep this (not raw)
    base = [(bucket + 10 * MINUTE, 5.0), (bucket + 20 * MINUTE, 7.0), (bucket + 30 * MINUTE, 6.0)]
    await client.post("/api/metrics", json=[{"device": "d", "metric": "m", "value": v, "ts": t} for t, v in base])

    def row(series: dict[str, Any]) -> list[Any]:
        [r] = series["points"]
        return r  # type: ignore[no-any-return]

    window = {"from": str(bucket), "to": str(bucket + HOUR - 1), "step": "1h"}
    assert row(await series_range(client, **window)) == [bucket, 5.0, 7.0, 6.0, 3, 6.0]
    # Late and older than the bucket's last: min, max, count and sum move, last does not.
    await client.post("/api/metrics", json={"device": "d", "metric": "m", "value": 1.0, "ts": bucket + 15 * MINUTE})
    await client.post("/api/metrics", json={"device": "d", "metric": "m", "value": 9.0, "ts": bucket + 25 * MINUTE})
    assert row(await series_range(client, **window)) == [bucket, 1.0, 9.0, 28.0 / 5, 5, 6.0]
    # Newer than the bucket's last: it becomes last. The 1-minute tier has its own bucket for it.
    await client.post("/api/metrics", json={"device": "d", "metric": "m", "value": 4.0, "ts": bucket + 45 * MINUTE})
    assert row(await series_range(client, **window)) == [bucket, 1.0, 9.0, 32.0 / 6, 6, 4.0]
    minute = await series_range(client, **{"from": str(bucket + 45 * MINUTE), "to": str(bucket + 46 * MINUTE - 1)})
    assert minute["step_ms"] == MINUTE and row(minute) == [bucket + 45 * MINUTE, 4.0, 4.0, 4.0, 1, 4.0]


async def test_open_bucket_merges_with_its_chunk_slot(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    """A series' newest bucket of each tier is open (kept in one hash field) and joins its chunk when a newer
    bucket opens. Readings already in the bucket's chunk slot (stored before the open buckets existed) merge
    with it when read and when it closes."""
    now = int(time.time() * 1000)
    hour = now - 2 * DAY - (now - 2 * DAY) % HOUR  # only the tiers keep it
    settings = Settings()
    layout = Layout.of(key_prefix, int(settings.raw_retention * 1000), settings.tiers)
    tier = next(t for t in layout.tiers if t.step == HOUR)
    window = {"from": str(hour), "to": str(hour + 2 * HOUR - 1), "step": "1h"}

    def open_field() -> bytes | None:
        return cast(bytes | None, sync_client.hget(f"{key_prefix}rollup-open", "d/m"))

    # A in the chunk slot only, as a writer without open buckets left it.
    await client.post("/api/metrics", json={"device": "d", "metric": "m", "value": 5.0, "ts": hour + 10 * MINUTE})
    opened = layout.decode_open(tier, open_field())
    assert opened == (hour, 5.0, 5.0, 5.0, 1, 5.0, hour + 10 * MINUTE)
    chunk = tier.chunk_start(hour)
    key = layout.tier_key(tier, "d/m", chunk)
    assert not sync_client.exists(key)  # nothing closed yet: the bucket lives in the hash alone
    sync_client.set(key, bytes(tier.span // tier.step * tier.bucket.size))
    offset = 10 * MINUTE
    record = tier.bucket.pack(5.0, 5.0, 5.0, 5.0, 1, offset & 0xFFFF, offset >> 16)
    sync_client.setrange(key, (hour - chunk) // tier.step * tier.bucket.size, record)
    sync_client.hdel(f"{key_prefix}rollup-open", "d/m")
    assert (await series_range(client, **window))["points"] == [[hour, 5.0, 5.0, 5.0, 1, 5.0]]

    # B opens the bucket again; a read merges it with A.
    await client.post("/api/metrics", json={"device": "d", "metric": "m", "value": 7.0, "ts": hour + 20 * MINUTE})
    assert (await series_range(client, **window))["points"] == [[hour, 5.0, 7.0, 6.0, 2, 7.0]]
    # C is late but inside the open bucket: min and count move, last stays B's.
    await client.post("/api/metrics", json={"device": "d", "metric": "m", "value": 1.0, "ts": hour + 5 * MINUTE})
    got = (await series_range(client, **window))["points"]
    assert_rows(got, [[hour, 1.0, 7.0, 13.0 / 3, 3, 7.0]])
    # D opens the next hour: the open bucket closes into its chunk slot, merged with A.
    await client.post("/api/metrics", json={"device": "d", "metric": "m", "value": 3.0, "ts": hour + HOUR + MINUTE})
    got = (await series_range(client, **window))["points"]
    assert_rows(got, [[hour, 1.0, 7.0, 13.0 / 3, 3, 7.0], [hour + HOUR, 3.0, 3.0, 3.0, 1, 3.0]])
    slot = decode_buckets(tier, chunk, cast(bytes, sync_client.get(key)), hour, hour)
    assert slot == [(hour, 1.0, 7.0, 13.0, 3, 7.0, hour + 20 * MINUTE)]
    opened = layout.decode_open(tier, open_field())
    assert opened is not None and opened[0] == hour + HOUR

    # Open buckets written for other tiers (the settings changed) are ignored, then replaced.
    sync_client.hset(f"{key_prefix}rollup-open", "d/m", b"v2:1000;" + bytes(64))
    assert layout.decode_open(tier, open_field()) is None
    await client.post("/api/metrics", json={"device": "d", "metric": "m", "value": 4.0, "ts": hour + HOUR + 2 * MINUTE})
    got = (await series_range(client, **window))["points"]
    assert_rows(got, [[hour, 1.0, 7.0, 13.0 / 3, 3, 7.0], [hour + HOUR, 4.0, 4.0, 4.0, 1, 4.0]])


async def test_reading_older_than_every_tier_is_counted(client: QuartClient) -> None:
    ancient = int(time.time() * 1000) - 401 * DAY
    batch = [
        {"device": "d", "metric": "m", "value": 1.0, "ts": ancient},
        {"device": "d", "metric": "m", "value": 2.0, "ts": ancient + 1},
        {"device": "d", "metric": "m", "value": 3.0},
    ]
    response = await client.post("/api/metrics", json=batch)
    assert response.status_code == 202
    body = await response.get_json()
    assert body["accepted"] == 3 and body["too_old"] == 2
    got = await series_range(client, **{"from": str(ancient - DAY), "to": "now", "step": "1h"})
    assert [r[4] for r in got["points"]] == [1]  # only the fresh one has history


async def test_short_tiers_expire(
    make_settings: Callable[..., Settings], sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    app = create_app(make_settings(raw_retention=1, rollup_tiers="1s:3s,2s:6s"))
    async with app.test_app():
        client: QuartClient = app.test_client()
        now = int(time.time() * 1000)
        # Two buckets of each tier: the older one closes into its chunk, the newer one stays open.
        await client.post(
            "/api/metrics",
            json=[
                {"device": "d", "metric": "m", "value": 2.0, "ts": now - 2_000},
                {"device": "d", "metric": "m", "value": 1.0, "ts": now},
            ],
        )

        def keys(kind: str) -> list[bytes]:
            return list(sync_client.scan_iter(match=f"{key_prefix}{kind}:*"))

        assert len(keys("raw")) == 1 and len(keys("rollup")) == 2
        got = await series_range(client, **{"from": "-1s", "to": "now"})
        assert got["step_ms"] == 0 and [p[1] for p in got["points"]] == [1.0]

        async def gone(kind: str) -> bool:
            return not keys(kind)

        await async_wait_until(lambda: gone("raw"), timeout=10, what="raw points expired")
        got = await series_range(client, **{"from": "-5s", "to": "now", "step": "1s"})
        older = [now - 2_000 - (now - 2_000) % 1000, 2.0, 2.0, 2.0, 1, 2.0]
        newer = [now - now % 1000, 1.0, 1.0, 1.0, 1, 1.0]
        assert got["points"] in ([], [newer], [older, newer])
        await async_wait_until(lambda: gone("rollup"), timeout=15, what="rollup chunks expired")

        async def nothing_left() -> bool:
            got = await series_range(client, **{"from": "-10s", "to": "now", "step": "2s"})
            return not got["points"]

        # The open buckets are read as their chunks would be: gone once past retention.
        await async_wait_until(nothing_left, timeout=10, what="open buckets past retention ignored")
        # What stays is the latest value and the bookkeeping (one field of open buckets per series, overwritten
        # by its next reading): no history key survives its retention.
        left = {
            k.decode().removeprefix(key_prefix).split(":")[0] for k in sync_client.scan_iter(match=key_prefix + "*")
        }
        assert {"latest", "latest-ts", "rollup-open"} <= left and not left & {"raw", "rollup", "history"}


async def test_bad_ranges_name_the_parameter(client: QuartClient) -> None:
    await client.post("/api/metrics", json={"device": "d", "metric": "m", "value": 1.0})
    for params, name in [
        ({"from": "now", "to": "-1h"}, "'from'"),
        ({"from": "yesterday"}, "'from'"),
        ({"from": "-1h", "to": "2026-13-01T00:00:00Z"}, "'to'"),
        ({"from": "-1h", "step": "5s"}, "'step'"),  # finer than the finest tier (1 min)
        ({"from": "-1h", "step": "90s"}, "'step'"),  # no tier divides it
        ({"from": "-400d", "step": "1m"}, "'step'"),  # too many rows
        ({"from": "-1h", "points": "0"}, "'points'"),
        ({"from": "-1h", "format": "xml"}, "'format'"),
    ]:
        response = await client.get("/api/metrics/series", query_string={"device": "d", "metric": "m", **params})
        assert response.status_code == 400, params
        body = await response.get_json()
        assert body["error"] == "bad_query" and name in body["detail"], (params, body)


async def test_ingest_library_loads_again_where_it_is_missing(
    make_settings: Callable[..., Settings], sync_client: sync_redis.Redis
) -> None:
    """Ingest is a Redis Function library, loaded by the first call that finds it missing (a restarted or
    flushed server, another node): that call is made again, and nothing of it is stored twice."""
    app = create_app(make_settings())
    async with app.test_app():
        client: QuartClient = app.test_client()
        library = services_of(app).series._ingest
        assert isinstance(library, Library)
        now = int(time.time() * 1000)
        for n in range(3):
            # Gone before the second and third POST (one reading, then two: the script's two paths).
            if n:
                sync_client.function_delete(library.name)
            body = [{"device": "d", "metric": "m", "value": float(n), "ts": now - 1000 * n}]
            body += [{"device": "e", "metric": "m", "value": float(n), "ts": now - 1000 * n}] if n == 2 else []
            response = await client.post("/api/metrics", json=body)
            assert response.status_code == 202, await response.get_data()
            assert library.name in ingest_libraries(sync_client)
        got = await series_range(client, **{"from": "-1m", "to": "now"})
        assert got["points"] == [[now - 2000, 2.0], [now - 1000, 1.0], [now, 0.0]]


async def test_csv_export_one_row_per_point(client: QuartClient) -> None:
    now = int(time.time() * 1000)
    body = [
        {"device": "d", "metric": "m", "value": float(i), "ts": now - i * 1000, "unit": "V", "tags": {"k": "a,b"}}
        for i in range(3)
    ]
    await client.post("/api/metrics", json=body)
    response = await client.get("/api/metrics/series", query_string={"device": "d", "from": "-1m", "format": "csv"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(await response.get_data(as_text=True))))
    assert rows[0] == ["device", "metric", "tags", "unit", "ts", "time", "value"]
    assert [(r[0], r[2], r[3], int(r[4]), float(r[6])) for r in rows[1:]] == [
        ("d", "k=a,b", "V", now - i * 1000, float(i)) for i in (2, 1, 0)
    ]
    assert rows[1][5].endswith("Z")
    # Accept: text/csv asks for the same; aggregated rows carry their columns.
    response = await client.get(
        "/api/metrics/series", query_string={"device": "d", "from": "-1h", "step": "1h"}, headers={"Accept": "text/csv"}
    )
    rows = list(csv.reader(io.StringIO(await response.get_data(as_text=True))))
    assert rows[0][-5:] == ["min", "max", "mean", "count", "last"]
    assert sum(int(r[-2]) for r in rows[1:]) == 3


async def test_annotations_take_the_same_range(client: QuartClient) -> None:
    now = int(time.time() * 1000)
    for hours, text in [(30, "old"), (2, "bearing replaced"), (0, "now")]:
        response = await client.post("/api/annotations", json={"device": "d", "ts": now - hours * HOUR, "text": text})
        assert response.status_code == 201
    response = await client.get("/api/annotations", query_string={"device": "d", "from": "-6h", "to": "now-1h"})
    assert [a["text"] for a in (await response.get_json())["annotations"]] == ["bearing replaced"]
    response = await client.get("/api/annotations", query_string={"from": "now", "to": "-1h"})
    assert response.status_code == 400 and "'from'" in (await response.get_json())["detail"]


async def test_readings_far_ahead_of_the_clock_are_refused(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(max_future=3600))
    async with app.test_app():
        client: QuartClient = app.test_client()
        now = int(time.time() * 1000)
        soon = {"device": "d", "metric": "m", "value": 1.0, "ts": now + 30 * MINUTE}
        response = await client.post("/api/metrics", json=[soon, {**soon, "value": 2.0, "ts": "2199-01-01T00:00:00Z"}])
        assert response.status_code == 422
        [error] = (await response.get_json())["detail"]
        assert error["field"] == "1.ts" and "LIVEDASH_MAX_FUTURE" in error["error"]
        latest = await (await client.get("/api/metrics/latest")).get_json()
        assert latest["series"] == []  # the batch is refused whole

        assert (await client.post("/api/metrics", json=soon)).status_code == 202
        # Line protocol names the far-future line and stores the other.
        lines = f"m,device=d value=3 {(now + 2 * HOUR) * 1_000_000}\nm,device=d value=4 {now * 1_000_000}\n"
        response = await client.post("/api/write", data=lines.encode(), headers={"Content-Type": "text/plain"})
        body = await response.get_json()
        assert response.status_code == 400 and [e["line"] for e in body["detail"]] == [1], body
        assert "ahead of the server's clock" in body["detail"][0]["error"] and body["accepted"] == 1


async def test_a_stored_reading_from_far_ahead_does_not_stall_history(make_settings: Callable[..., Settings]) -> None:
    """A reading stored before LIVEDASH_MAX_FUTURE existed (or was lowered): the newest-points read stays quick."""
    app = create_app(make_settings(max_future=3600))
    async with app.test_app():
        client: QuartClient = app.test_client()
        far = Reading.model_validate(
            {"device": "d", "metric": "m", "value": 9.0, "ts": "2199-06-01T00:00:00Z"},
            context={"max_future_ms": 200 * 365 * DAY},
        )
        await services_of(app).series.ingest([far])
        await client.post("/api/metrics", json={"device": "d", "metric": "m", "value": 1.0})
        async with asyncio.timeout(15):  # unbounded, it walked ~4 million empty chunks back from 2199
            got = await series_range(client)
        assert [p[1] for p in got["points"]] == [1.0]


async def test_format_1_history_is_read_with_format_2(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    """History written before format 2 (12-byte points, 40-byte buckets, other chunk spans) reads until it expires.

    The key names and records are spelled out here as format 1 wrote them, so an upgrade keeps its past.
    """
    now = int(time.time() * 1000)
    # Raw: a format 1 chunk (span 10 min at 6 h retention) with two points, then a reading of today in the same chunk.
    raw_chunk = (now - 2 * MINUTE) - (now - 2 * MINUTE) % 600_000
    old_points = [(raw_chunk, 1.5), (raw_chunk + 1, 2.5)]
    sync_client.set(
        f"{key_prefix}raw:600000:d/m:{raw_chunk}",
        b"".join(struct.pack("<Id", ts - raw_chunk, v) for ts, v in old_points),
        px=HOUR,
    )
    # Tiers: format 1 chunks are 360 buckets; one bucket two days ago holds 2 readings (1.0 at +10 s, 3.0 at +20 s).
    minute = (now - 2 * DAY) - (now - 2 * DAY) % MINUTE
    for step in (MINUTE, HOUR):
        span = 360 * step
        chunk = minute - minute % span
        bucket = minute - minute % step
        data = bytearray(360 * 40)
        at = (bucket - chunk) // step * 40
        struct.pack_into("<ddddII", data, at, 1.0, 3.0, 4.0, 3.0, 2, minute - bucket + 20_000)
        sync_client.set(f"{key_prefix}rollup:{step}:{span}:d/m:{chunk}", bytes(data), px=HOUR)

    # Format 2 readings into the same raw chunk and the same buckets: one older than the old last, one newest.
    new = [(raw_chunk + 2, 3.5), (minute + 5_000, 5.0), (minute + 30_000, 0.5)]
    body = [{"device": "d", "metric": "m", "value": v, "ts": t} for t, v in new]
    response = await client.post("/api/metrics", json=body)
    assert response.status_code == 202
    assert sync_client.exists(f"{key_prefix}raw:v2:600000:d/m:{raw_chunk}")

    got = await series_range(client, **{"from": str(raw_chunk), "to": str(raw_chunk + 10)})
    assert got["step_ms"] == 0 and got["points"] == [[raw_chunk, 1.5], [raw_chunk + 1, 2.5], [raw_chunk + 2, 3.5]]
    newest = await client.get("/api/metrics/series", query_string={"device": "d", "metric": "m"})
    [series] = (await newest.get_json())["series"]
    assert [raw_chunk, 1.5] in series["points"] and [raw_chunk + 2, 3.5] in series["points"]

    # The bucket in both formats merges: min, max, sum, count; last is the newest ts of the two (+30 s: 0.5).
    want = [minute, 0.5, 5.0, 9.5 / 4, 4, 0.5]
    got = await series_range(client, **{"from": str(minute), "to": str(minute + MINUTE - 1), "step": "1m"})
    assert got["points"] == [want]
    hour = minute - minute % HOUR
    got = await series_range(client, **{"from": str(hour), "to": str(hour + HOUR - 1), "step": "1h"})
    assert got["points"] == [[hour, *want[1:]]]


def test_format_2_records_are_smaller() -> None:
    """11 bytes a raw point, 38 a 1-minute bucket, 39 an hourly one; tier chunks 1/48 of the retention."""
    layout = Layout.of("p:", 6 * HOUR, ((MINUTE, 7 * DAY), (HOUR, 400 * DAY)))
    minutes, hours = layout.tiers
    assert RAW.size == 11 and minutes.bucket.size == 38 and hours.bucket.size == 39
    assert minutes.span == 210 * MINUTE and hours.span == 200 * HOUR
    assert decode_raw(1_000, struct.pack("<HBd", 0x423F, 0x0F, 2.5)) == [(1_000 + 999_999, 2.5)]
    data = hours.bucket.pack(1.0, 2.0, 3.0, 2.0, 2, 0xEE7F, 0x36)  # last at 3,599,999 ms into the hour
    assert decode_buckets(hours, 0, data, 0, HOUR) == [(0, 1.0, 2.0, 3.0, 2, 2.0, 3_599_999)]


async def test_one_reading_runs_store_what_batches_store(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    """What a series stores must not depend on the script's path: one reading per run (the straight path), one
    reading of the series in a run of several (written at once) or a batch of the series (gathered)."""
    now = int(time.time() * 1000)
    start = now - 20 * MINUTE
    times = [start, start + 1_000, start + 11 * MINUTE, start + 500, now - 2 * DAY, now - 30 * DAY, now - 401 * DAY]
    readings = [(ts, float(n) * 1.5 - 3) for n, ts in enumerate(times)]  # a late one, tier-only ones, a too-old one
    too_old = 0
    for ts, value in readings:  # one POST each: one reading per script run
        response = await client.post("/api/metrics", json={"device": "one", "metric": "m", "value": value, "ts": ts})
        too_old += (await response.get_json())["too_old"]
    for n, (ts, value) in enumerate(readings):  # each run: this series once, and another series
        pair = [
            {"device": "each", "metric": "m", "value": value, "ts": ts},
            {"device": f"pad{n}", "metric": "m", "value": 0},
        ]
        response = await client.post("/api/metrics", json=pair)
        assert response.status_code == 202
    body = [{"device": "many", "metric": "m", "value": v, "ts": ts} for ts, v in readings]
    response = await client.post("/api/metrics", json=body)
    assert (await response.get_json())["too_old"] == too_old == 1

    def stored(device: str) -> dict[str, Any]:
        names = [k.decode() for k in sync_client.scan_iter(match=f"{key_prefix}*:{device}/m:*")]
        assert names
        return {n.replace(f":{device}/m:", ":S:"): sync_client.get(n) for n in names}

    assert stored("one") == stored("many") == stored("each")
    opens = sync_client.hmget(f"{key_prefix}rollup-open", ["one/m", "many/m", "each/m"])
    assert opens[0] and opens[0] == opens[1] == opens[2]
    latest = sync_client.hmget(f"{key_prefix}latest-ts", ["one/m", "many/m", "each/m"])
    assert latest[0] == latest[1] == latest[2] == str(max(times)).encode()

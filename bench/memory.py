"""Series history: Redis memory per series at full retention, and range-query latency.

    .venv/bin/python -m bench.memory            # default tiers: 6 h raw at 1 Hz, 7 d of minutes, 400 d of hours

Against a private embedded Redis started for the run (stopped at the end).
One series is backfilled through the app's own store (the ingest script):
one reading a second for the raw retention, one a minute back to the
1-minute tier's retention, one an hour back to the 1-hour tier's. A tier's
chunk is allocated whole, so its memory does not depend on the rate; raw
memory does, hence 1 Hz where raw is kept. Then ``MEMORY USAGE`` is summed
over the series' keys, and range queries are timed: a 7-day range at 1,000
points for one series, and 24 series' newest 120 points (the dashboard's
sparklines).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from app.ingest.readings import Reading
from app.series import SeriesStore
from app.settings import Settings
from app.storage.embedded import EmbeddedServer
from app.storage.keyspace import Keys

SECOND, MINUTE, HOUR, DAY = 1_000, 60_000, 3_600_000, 86_400_000


def backfill_times(now: int, settings: Settings) -> list[int]:
    raw_keep = int(settings.raw_retention * 1000)
    tiers = settings.tiers
    times = list(range(now - raw_keep + SECOND, now + 1, SECOND))
    edge = now - raw_keep
    for step, keep in tiers:
        times += list(range(edge - edge % step, now - keep + step, -step))
        edge = now - keep
    return sorted(t for t in times if t > now - max(k for _, k in tiers) + HOUR)


async def series_memory(redis: Redis, prefix: str, sid: str) -> tuple[int, int]:
    total, count = 0, 0
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        name = key.decode()
        if sid in name and not name.endswith(("latest", "latest-ts", "events")):
            total += int(await redis.memory_usage(key, samples=0) or 0)
            count += 1
    return total, count


async def main() -> None:
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp))
        server.ensure_running()
        redis = Redis.from_url(server.url)
        try:
            keys = Keys("benchmem:")
            store = SeriesStore.from_settings(redis, keys, settings)
            now = int(time.time() * 1000)
            times = backfill_times(now, settings)
            started = time.perf_counter()
            for n in range(0, len(times), 5_000):
                batch = [Reading(device="mem", metric="m", value=(t / 1000) % 97, ts=t) for t in times[n : n + 5_000]]
                await store.ingest(batch)
            took = time.perf_counter() - started
            used, key_count = await series_memory(redis, keys.prefix, "mem/m")
            print(f"backfilled {len(times):,} readings in {took:.1f} s ({len(times) / took:,.0f}/s)")
            print(f"one series at full default retention: {used:,} bytes ({used / 2**20:.3f} MiB) in {key_count} keys")
            for kind in ("raw:", "rollup:v2:60000:", "rollup:v2:3600000:"):
                part = 0
                async for key in redis.scan_iter(match=f"{keys.prefix}{kind}*"):
                    part += int(await redis.memory_usage(key, samples=0) or 0)
                print(f"  {kind:<19} {part:>10,} bytes")

            # 23 more series with an hour of 1 Hz points, for the dashboard's 24 sparklines.
            for s in range(23):
                hour = [
                    Reading(device="mem", metric=f"s{s}", value=t % 13, ts=t) for t in range(now - HOUR, now, SECOND)
                ]
                await store.ingest(hour)
            sids = ["mem/m", *(f"mem/s{s}" for s in range(23))]

            async def timed(call: object, rounds: int = 200) -> list[float]:
                out = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    await call()  # type: ignore[operator]
                    out.append((time.perf_counter() - t0) * 1000)
                return out

            week = await timed(lambda: store.range(["mem/m"], now - 7 * DAY, now, 1000, None))
            spark = await timed(lambda: store.history(sids, 120))
            for name, samples in (("7-day range, 1,000 points, 1 series", week), ("24 series x 120 newest", spark)):
                q = statistics.quantiles(samples, n=100)
                print(f"{name}: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms (store call, Python decode included)")
            result = await store.range(["mem/m"], now - 7 * DAY, now, 1000, None)
            print(f"  7-day range came back at step {result.step} ms, {len(result.rows['mem/m'])} rows")
        finally:
            await redis.aclose()
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())

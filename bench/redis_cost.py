"""Where Redis CPU per ingested reading goes: the ingest script with parts of its work switched off.

    .venv/bin/python -m bench.redis_cost [--readings 100000] [--batch 500] [--variants full,raw-only,no-history]
    # the same file against another commit's app (a worktree of it), e.g. before the tiers:
    PYTHONPATH=/tmp/base .venv/bin/python bench/redis_cost.py --variants full --batch 1

Against a private embedded Redis (stopped at the end), through the app's own
store (SeriesStore -> ingest_readings.lua), batches of ``--batch`` readings over
20 series at the current time. Redis CPU is ``INFO cpu`` (user + sys) before
and after, divided by the readings. Variants, by settings only:

* ``full``: the defaults (raw points, 1-minute and 1-hour tiers);
* ``raw only``: no rollup tiers;
* ``no history``: no tiers and readings just past a 1 s raw retention, so
  each reading costs the latest value, its ``metric`` event and the script's
  own overhead (argument parsing, limits) only.

``--batch 1`` is a single-reading POST that group commit found alone (one
script run per reading, no two readings of a run in one series). Against a
commit from before the tiers (no ``SeriesStore.from_settings``), only ``full``
means anything: its store keeps the history it had then.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from app.ingest.readings import Reading
from app.series import SeriesStore
from app.settings import Settings
from app.storage.embedded import EmbeddedServer
from app.storage.keyspace import Keys


async def cpu(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def make_store(redis: Redis, keys: Keys, settings: Settings) -> SeriesStore:
    if hasattr(SeriesStore, "from_settings"):
        return SeriesStore.from_settings(redis, keys, settings)
    return SeriesStore(redis, keys, settings.history_size, settings.event_log_maxlen)  # before the tiers


async def measure(redis: Redis, name: str, settings: Settings, readings: int, batch: int, age_ms: int) -> float:
    store = make_store(redis, Keys(f"benchcost:{name}:"), settings)
    now = int(time.time() * 1000) - age_ms
    batches = [
        [Reading(device=f"bench-{i % 20}", metric="load", value=i, ts=now + n, unit="W") for i in range(batch)]
        for n in range(readings // batch)
    ]
    await store.ingest(batches[0])  # the script loaded, the series exist
    before = await cpu(redis)
    for b in batches[1:]:
        await store.ingest(b)
    used = await cpu(redis) - before
    return used / (batch * (len(batches) - 1)) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--variants", default="full,raw-only,no-history", help="comma list")
    parser.add_argument(
        "--url",
        default=None,
        help="a Redis to use instead of a private embedded one (e.g. one started under valgrind to count "
        "instructions); its keys are written under benchcost:* and deleted at the end",
    )
    args = parser.parse_args()
    chosen = args.variants.split(",")
    # Settings the app does not know (an older commit) are ignored, as its environment would be.
    variants = [
        (name, settings, age)
        for name, settings, age in (
            ("full", Settings(), 0),
            ("raw only", Settings(rollup_tiers=""), 0),
            ("no history", Settings(rollup_tiers="", raw_retention=1), 5_000),
        )
        if name.replace(" ", "-") in chosen
    ]
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = args.url
        if not url:
            server = EmbeddedServer(Path(tmp))
            server.ensure_running()
            url = server.url
        redis = Redis.from_url(url)
        try:
            print(f"Redis CPU per reading, batches of {args.batch}, {args.readings:,} readings each:")
            # Each variant twice, in two orders, under its own prefix: the spread is the noise.
            results: dict[str, list[float]] = {name: [] for name, _, _ in variants}
            for round_, order in enumerate((variants, variants[::-1])):
                for name, settings, age in order:
                    prefix = f"{name.replace(' ', '-')}-{round_}"
                    results[name].append(await measure(redis, prefix, settings, args.readings, args.batch, age))
            for name, runs in results.items():
                print(f"  {name:<11} " + " / ".join(f"{m:5.1f}" for m in runs) + " µs")
        finally:
            if not server:
                async for key in redis.scan_iter(match="benchcost:*", count=1000):
                    await redis.delete(key)
            await redis.aclose()
            if server:
                server.stop()


if __name__ == "__main__":
    asyncio.run(main())

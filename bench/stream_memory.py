"""What an idle stream holds in the server, by where it was allocated (tracemalloc).

    .venv/bin/python -m bench.stream_memory [--streams 2000] [--top 15]

``bench.run``'s idle scenario says how much RSS each idle stream adds; this
says what it is made of. The app runs as ``livedash serve`` runs it
(hypercorn, uvloop, default settings but auth off and no demo) inside this
process, on a private embedded Redis; a separate process opens the streams
(``GET /api/stream``) and holds them, so its own memory is not counted.
Warm-up streams are opened first (first-use caches, code paths), then
tracemalloc compares the Python heap before and after ``--streams`` more
and divides by their number: per allocation site (file and line) and per
package. What Python allocates is not all of RSS: the allocator's own
overhead and fragmentation come on top (the RSS line says how much, with
tracemalloc's own bookkeeping included), and the kernel's socket buffers are
not in RSS at all.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config

from app import create_app
from app.services import SLOT, services_of
from app.settings import Settings
from app.storage.embedded import EmbeddedServer

from .peers import free_port

# Opens N streams, prints "open N" when every one has its first bytes, holds them until stdin closes.
CLIENT = textwrap.dedent(
    """
    import asyncio, resource, sys
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    async def one(port, held):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/stream HTTP/1.1\\r\\nHost: bench\\r\\nAccept: text/event-stream\\r\\n\\r\\n")
        await reader.read(1)
        held.append(writer)
    async def main(port, n):
        held = []
        for start in range(0, n, 200):
            await asyncio.gather(*(one(port, held) for _ in range(min(200, n - start))))
        print("open", len(held), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    """
)


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def package(filename: str) -> str:
    """The package an allocation site belongs to: ours, a library's, or the standard library's."""
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    if "app" in parts:
        return "app (livedash): " + "/".join(parts[parts.index("app") + 1 : parts.index("app") + 3])
    return "stdlib: " + Path(filename).stem


async def open_streams(port: int, n: int) -> asyncio.subprocess.Process:
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), str(n), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert client.stdout is not None
    line = await client.stdout.readline()
    if not line.startswith(b"open"):
        raise RuntimeError(f"the client did not open its streams: {line!r}")
    return client


async def measure(streams: int, warmup: int, top: int, data_dir: Path) -> None:
    redis = EmbeddedServer(data_dir / "redis")
    redis.ensure_running()
    settings = Settings(redis_url=redis.url, auth="off", demo=False, data_dir=data_dir, max_streams=streams * 2)
    app = create_app(settings)
    config = Config()
    port = free_port()
    config.bind = [f"127.0.0.1:{port}"]
    config.backlog = 4096
    config.keep_alive_timeout = 20
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    clients: list[asyncio.subprocess.Process] = []
    try:
        while SLOT not in app.extensions and not server.done():  # noqa: ASYNC110 (Quart's start-up has no event)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        hub = services_of(app).hub
        clients.append(await open_streams(port, warmup))
        await asyncio.sleep(1)
        gc.collect()
        tracemalloc.start(8)
        before, rss_before = tracemalloc.take_snapshot(), rss_kib()
        clients.append(await open_streams(port, streams))
        while len(hub.subscriptions) < warmup + streams:  # noqa: ASYNC110 (the hub has no event for it)
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        gc.collect()
        after, rss_after = tracemalloc.take_snapshot(), rss_kib()
        tracemalloc.stop()
        report(before, after, streams, rss_after - rss_before, top)
    finally:
        for client in clients:
            client.kill()
            await client.wait()
        stop.set()
        await server
        redis.stop()


def report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, rss: int, top: int) -> None:
    diffs = [d for d in after.compare_to(before, "lineno") if d.size_diff > 0]
    total = sum(d.size_diff for d in after.compare_to(before, "filename"))
    print(f"{n:,} idle streams: Python heap +{total / n / 1024:.1f} KiB a stream (tracemalloc), RSS +{rss / n:.1f} KiB")
    by_package: Counter[str] = Counter()
    for d in diffs:
        by_package[package(d.traceback[0].filename)] += d.size_diff
    print("\nby package (where the allocation was made):")
    for name, size in by_package.most_common(top):
        print(f"  {size / n:>8,.0f} B  {name}")
    print(f"\ntop {top} allocation sites:")
    for d in diffs[:top]:
        frame = d.traceback[0]
        print(f"  {d.size_diff / n:>8,.0f} B  {d.count_diff / n:>5.1f} blocks  {frame.filename}:{frame.lineno}")
    print("\nby call path (the allocation, then its callers outside asyncio):")
    for d in [d for d in after.compare_to(before, "traceback") if d.size_diff > 0][:top]:
        frames = list(reversed(d.traceback))  # most recent first
        callers = [f for f in frames[1:] if "/asyncio/" not in f.filename][:3]
        path = " <- ".join(
            f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno}" for f in [frames[0], *callers]
        )
        print(f"  {d.size_diff / n:>8,.0f} B  {path}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="livedash-stream-memory-") as tmp:
        started = time.monotonic()
        uvloop.run(measure(args.streams, args.warmup, args.top, Path(tmp)))
        print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()

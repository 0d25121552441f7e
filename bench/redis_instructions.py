"""Instructions the Redis server executes per ingested reading, counted by valgrind.

    .venv/bin/python -m bench.redis_instructions [--batches 1,7,500]
    # another commit's app (a worktree of it), e.g. from before the tiers:
    PYTHONPATH=/tmp/base .venv/bin/python bench/redis_instructions.py

Redis CPU time per reading (``bench/redis_cost.py``, ``bench.run``) moves
with whatever else the machine runs; instructions do not. Each figure runs
the server the app embeds (``app.storage.embedded.server_binary``) under
``valgrind --tool=callgrind`` twice, ingesting N and then 3N readings through
the app's store (``redis_cost.measure``: batches of ``--batch`` readings over
20 series at the current time, default settings), and divides the
difference in the server's instructions by 2N: start-up, loading the script
and creating the series cancel out. Instructions are not time (a cache miss
costs more than an add), so read them beside a CPU figure; they are what a
change to the Lua code moves, measured the same way on any machine.
Needs valgrind (Debian's package).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from app.settings import Settings
from app.storage.embedded import server_binary

if __package__:
    from .redis_cost import measure
else:  # run as a file, against another commit's app (PYTHONPATH=<a worktree of it>): this bench's own copy
    from redis_cost import measure  # type: ignore[import-not-found,no-redef]

# Readings per figure's smaller run: enough that the difference dwarfs the noise of one batch, few enough for
# valgrind (about 50x slower than the server alone).
READINGS = {1: 300, 7: 700, 16: 800, 500: 5_000}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _ingest(url: str, batch: int, readings: int) -> None:
    redis = Redis.from_url(url)
    try:
        for _ in range(300):  # valgrind takes a while to start the server
            try:
                await redis.ping()
                break
            except RedisConnectionError:
                await asyncio.sleep(0.1)
        await measure(redis, "instructions", Settings(), readings, batch, 0)
        with contextlib.suppress(RedisConnectionError):  # the server closes the connection as it goes
            await redis.shutdown(nosave=True)
    finally:
        await redis.aclose()


def instructions(batch: int, readings: int) -> int:
    """The server's instructions from start to shutdown, with ``readings`` ingested in batches of ``batch``."""
    with tempfile.TemporaryDirectory(prefix="livedash-instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        port = free_port()
        server = subprocess.Popen(
            [
                *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", server_binary()),
                *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            asyncio.run(_ingest(f"redis://127.0.0.1:{port}/0", batch, readings))
            server.wait(timeout=120)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        for _ in range(50):
            if out.exists():
                break
            time.sleep(0.1)
        found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if not found:
            raise RuntimeError(f"no instruction total in {out}")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="1,7,500", help="comma list of batch sizes")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is needed (Debian: apt-get install valgrind)")
    print("Redis server instructions per ingested reading (default settings, 20 series):")
    for batch in (int(b) for b in args.batches.split(",")):
        n = READINGS.get(batch, 100 * batch)
        small, large = instructions(batch, n), instructions(batch, 3 * n)
        print(f"  batches of {batch:>3}: {(large - small) / (2 * n):>9,.0f}")


if __name__ == "__main__":
    main()

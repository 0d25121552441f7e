"""A bounded soak: many streams, steady ingest, periodic reconnects, for minutes.

    python -m bench.soak --streams 300 --rate 20 --minutes 3

Starts a private embedded Valkey and one livedash process (hypercorn, uvloop)
on 127.0.0.1, opens ``--streams`` SSE streams (plain asyncio sockets), posts
``--rate`` readings per second, and every ``--reconnect-every`` seconds drops
a slice of the streams, which come back with ``last_event_id``. Every 10 s it
samples the server's RSS and open descriptors. At the end each stream's ids
must be exactly the ids posted while it was alive-or-resuming (delivered ==
expected), and memory and descriptors must have levelled off.
Not part of the test suite; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from app.storage.embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            kids.setdefault(int(stat[stat.rindex(")") + 2 :].split()[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += kids.get(current, [])
    return out


def rss_and_fds(pid: int) -> tuple[int, int]:
    rss = fds = 0
    for p in tree(pid):
        try:
            rss += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            fds += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return rss, fds


def start_app(port: int, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """One livedash process (hypercorn, uvloop, one worker) on 127.0.0.1."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hypercorn",
            "app:create_app()",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "uvloop",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@dataclass
class Stream:
    index: int
    last_id: str = ""
    ids: list[str] = field(default_factory=list)
    reconnects: int = 0


async def follow(port: int, stream: Stream, stop: asyncio.Event, kick: asyncio.Event) -> None:
    """Read one SSE stream; on a kick (or a drop) reconnect with last_event_id."""
    while not stop.is_set():
        query = f"?last_event_id={stream.last_id}" if stream.last_id else ""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.write(f"GET /api/stream{query} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
        kick.clear()
        buffer = b""
        try:
            while not stop.is_set() and not kick.is_set():
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), 0.5)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buffer += chunk
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    event_id = event_type = None
                    for line in block.split(b"\n"):
                        if line.startswith(b"id: "):
                            event_id = line[4:].decode()
                        elif line.startswith(b"event: "):
                            event_type = line[7:].decode()
                    if event_id is not None:
                        stream.last_id = event_id
                        if event_type == "metric":
                            stream.ids.append(event_id)
        finally:
            writer.close()
            stream.reconnects += 1


async def soak(args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="livedash-soak-"))
    redis = EmbeddedServer(workdir / "redis")
    redis.ensure_running()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDASH_")}
    env.update({"REDIS_URL": redis.url, "LIVEDASH_KEY_PREFIX": "soak:", "LIVEDASH_DEMO": "0", "LIVEDASH_AUTH": "off"})
    server_log = (workdir / "server.log").open("wb")
    print(f"  server log: {workdir / 'server.log'}", flush=True)
    server = start_app(port, env, server_log)
    samples: list[dict[str, float]] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(100):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            start_cursor = (await http.get("/api/events")).json()["cursor"]
            streams = [Stream(i, last_id=start_cursor) for i in range(args.streams)]
            stop = asyncio.Event()
            kicks = [asyncio.Event() for _ in streams]
            readers = [asyncio.create_task(follow(port, s, stop, k)) for s, k in zip(streams, kicks, strict=True)]
            posted: list[str] = []
            started = time.monotonic()
            deadline = started + args.minutes * 60
            next_sample = next_kick = started
            seq = 0
            while time.monotonic() < deadline:
                now = time.monotonic()
                response = await http.post(
                    "/api/metrics", json={"device": f"soak-{seq % 10}", "metric": "m", "value": seq}
                )
                if response.status_code != 202:
                    raise RuntimeError(f"POST answered {response.status_code}: {response.text}")
                posted.append(response.json()["cursor"])
                seq += 1
                if now >= next_kick:
                    for index in random.sample(range(len(streams)), max(1, len(streams) // 10)):
                        kicks[index].set()
                    next_kick = now + args.reconnect_every
                if now >= next_sample:
                    rss, fds = rss_and_fds(server.pid)
                    samples.append({"t": round(now - started, 1), "rss_mib": round(rss / 2**20, 1), "fds": fds})
                    print(f"  t={samples[-1]['t']:>6}s rss={samples[-1]['rss_mib']:>7} MiB fds={fds}", flush=True)
                    next_sample = now + 10
                await asyncio.sleep(max(0.0, 1 / args.rate - (time.monotonic() - now)))
            # Let every stream catch up on what was posted, then stop.
            catch_up = time.monotonic() + 15
            # Plain data written by the readers: polled, bounded by catch_up.
            while time.monotonic() < catch_up and any(s.last_id != posted[-1] for s in streams):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*readers, return_exceptions=True)
        expected = posted
        exact = sum(1 for s in streams if s.ids == expected)
        delivered = sum(len(s.ids) for s in streams)
        first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
        return {
            "streams": args.streams,
            "rate": args.rate,
            "minutes": args.minutes,
            "posted": len(posted),
            "delivered": delivered,
            "expected": len(expected) * len(streams),
            "streams_exact": exact,
            "reconnects": sum(s.reconnects for s in streams),
            "samples": samples,
            "rss_growth_mib_after_warmup": round(last["rss_mib"] - first["rss_mib"], 1),
            "fd_growth_after_warmup": last["fds"] - first["fds"],
        }
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        server_log.close()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="readings per second")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--reconnect-every", type=float, default=10.0, help="seconds between reconnect waves")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    ok = result["delivered"] == result["expected"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

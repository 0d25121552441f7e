"""A deploy under load: the Procfile's server with N open streams gets SIGTERM on its whole group.

Starts a private embedded Valkey in a temporary directory and the ``Procfile``'s
``web:`` line (``sh -c``, its own session, auth off, no demo), opens N streams
(plain sockets, each read until ``ready``), then ``os.killpg(SIGTERM)`` as
Heroku, honcho or systemd do, and reports how long until every stream had its
``bye`` and until the server exited, with its exit status.

    .venv/bin/python -m bench.group_sigterm --streams 1000 --workers 2

Bounded: every wait has a deadline; loopback only; everything it starts is
stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import EmbeddedServer  # noqa: E402

DEADLINE = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def procfile_command() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise SystemExit("no web: line in the Procfile")


def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The Procfile's web: line as a platform runs it: a shell, in a session of its own."""
    return subprocess.Popen(
        ["sh", "-c", procfile_command()],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def wait_ready(port: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("server not ready")


async def open_stream(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    buf = b""
    while b"event: ready" not in buf:
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError("stream closed before ready")
        buf += chunk
    return reader, writer


async def until_bye(reader: asyncio.StreamReader, started: float) -> float | None:
    buf = b""
    while b"event: bye" not in buf:
        chunk = await reader.read(65536)
        if not chunk:
            return None
        buf = buf[-64:] + chunk
    return time.monotonic() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ld-bench-") as tmp:
        redis = EmbeddedServer(Path(tmp) / "redis")
        redis.ensure_running()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDASH_")}
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            PORT=str(port),
            WEB_CONCURRENCY=str(args.workers),
            REDIS_URL=redis.url,
            LIVEDASH_AUTH="off",
            LIVEDASH_DEMO="0",
            LIVEDASH_LOG_LEVEL="WARNING",
        )
        proc = start(env)
        try:
            await wait_ready(port)
            opened = time.monotonic()
            streams = []
            for i in range(0, args.streams, 100):
                batch = [open_stream(port) for _ in range(min(100, args.streams - i))]
                streams += await asyncio.wait_for(asyncio.gather(*batch), DEADLINE)
            print(f"{len(streams)} streams open in {time.monotonic() - opened:.2f}s (each saw ready)")
            started = time.monotonic()
            os.killpg(proc.pid, signal.SIGTERM)
            byes = await asyncio.wait_for(asyncio.gather(*(until_bye(r, started) for r, _ in streams)), DEADLINE)
            got = sorted(t for t in byes if t is not None)
            code = await asyncio.to_thread(proc.wait, DEADLINE)
            exited = time.monotonic() - started
            print(f"bye on {len(got)}/{len(streams)} streams")
            if got:
                print(
                    f"time to bye: first {got[0] * 1000:.0f} ms, median {got[len(got) // 2] * 1000:.0f} ms, "
                    f"last {got[-1] * 1000:.0f} ms"
                )
            print(f"server exited with status {code} after {exited * 1000:.0f} ms")
            for _, writer in streams:
                writer.close()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            redis.stop()


if __name__ == "__main__":
    asyncio.run(main())

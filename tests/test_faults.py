"""Faults against real processes: Redis stopped, Redis emptied, workers killed, SIGTERM.

Each test runs its own private Redis-protocol server (the embedded Valkey in a
temporary directory) so it can stop, empty and restart it freely.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from app.storage.embedded import EmbeddedServer

from .servers import AppServer
from .sse_client import open_stream, payload
from .test_stream import TS, post_readings
from .waiting import wait_until


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path / "private-redis")
    server.ensure_running()
    yield server
    server.stop()


@pytest.fixture
def on_private(private_redis: EmbeddedServer, start_server: Callable[..., AppServer]) -> Callable[..., AppServer]:
    def start(**env: str) -> AppServer:
        return start_server(REDIS_URL=private_redis.url, **env)

    return start


def latest_values(client: sync_redis.Redis, prefix: str) -> dict[bytes, bytes]:
    return client.hgetall(prefix + "latest")  # type: ignore[return-value]


async def test_redis_outage_keeps_streams_open_and_loses_nothing(
    private_redis: EmbeddedServer, on_private: Callable[..., AppServer]
) -> None:
    server = on_private()
    async with open_stream(server.url) as stream:
        await stream.next()
        before = await asyncio.to_thread(post_readings, server.url, [1.0, 2.0])
        assert [e.id for e in await stream.take(2)] == before

        private_redis.stop()
        status = await stream.take(1, types={"status"})
        assert payload(status[0]) == {"state": "stale", "reason": "storage-unreachable"}
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503
        refused = httpx.post(server.url + "/api/metrics", json={"device": "d", "metric": "m", "value": 1})
        assert refused.status_code == 503
        assert refused.headers["Retry-After"]
        assert refused.json()["error"] == "unavailable"
        # The stream is still open: keep-alives go on while Redis is away.
        await stream.take(1, types={"ping"})

        private_redis.ensure_running()  # same data dir: the append-only file brings the data back
        back = await stream.take(1, types={"status"}, within=15)
        assert payload(back[0]) == {"state": "live"}
        after = await asyncio.to_thread(post_readings, server.url, [3.0])
        assert [e.id for e in await stream.take(1)] == after
    assert httpx.get(server.url + "/readyz").status_code == 200
    # Everything that got a 2xx is in the log, in order.
    polled = httpx.get(server.url + "/api/events", params={"since": "0-0"}).json()
    assert [e["id"] for e in polled["events"]] == before + after


async def test_redis_that_lost_its_data_resets_clients(
    private_redis: EmbeddedServer, on_private: Callable[..., AppServer]
) -> None:
    server = on_private()
    old = await asyncio.to_thread(post_readings, server.url, [1.0, 2.0])
    async with open_stream(server.url) as stream:
        await stream.next()
        client = sync_redis.Redis.from_url(private_redis.url)
        try:
            client.flushall()  # our own private server: it is ours to empty
        finally:
            client.close()
        # The connected stream learns of it, within a read's block time (1 s) even with no writes...
        reset = await stream.take(1, types={"reset"}, within=3)
        assert payload(reset[0])["reason"] == "epoch-changed"
    await asyncio.to_thread(post_readings, server.url, [3.0])
    # ...and so does a client resuming from an id of the old dataset.
    async with open_stream(server.url, headers={"Last-Event-ID": old[-1]}) as stream:
        first = await stream.next()
    assert first.event == "reset" and payload(first)["reason"] == "epoch-changed"
    polled = httpx.get(server.url + "/api/events", params={"since": old[0]}).json()
    assert polled["reset"] is True


async def test_killed_worker_clients_resume_elsewhere_without_loss(
    start_server: Callable[..., AppServer],
) -> None:
    """Two instances on one Redis; the one a client streams from is killed -9 mid-stream."""
    doomed, survivor = start_server(), start_server()
    async with open_stream(doomed.url) as stream:
        await stream.next()
        first = await asyncio.to_thread(post_readings, survivor.url, [1.0])
        seen = [e.id for e in await stream.take(1)]
        assert seen == first
        for pid in doomed.worker_pids():
            os.kill(pid, signal.SIGKILL)
        doomed.kill()
        with pytest.raises((httpx.HTTPError, TimeoutError)):
            await stream.next(within=5)
    missed = await asyncio.to_thread(post_readings, survivor.url, [2.0, 3.0])
    async with open_stream(survivor.url, headers={"Last-Event-ID": seen[-1]}) as stream:
        resumed = [e.id for e in await stream.until("ping")]
    assert resumed == missed


async def test_sigterm_ends_streams_with_a_retry_hint(start_server: Callable[..., AppServer]) -> None:
    server = start_server(workers=2)
    async with open_stream(server.url) as one, open_stream(server.url) as two:
        await one.next()
        await two.next()
        started = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        for stream in (one, two):
            bye = await stream.take(1, types={"bye"}, within=5)
            assert bye[0].retry is not None and bye[0].retry <= 1250
            with pytest.raises((StopAsyncIteration, httpx.HTTPError)):
                await stream.next(within=5)
        assert time.monotonic() - started < 3.0
    wait_until(lambda: server.proc is None or server.proc.poll() is not None, 10, what="server exit")


def unread_by_server(server_port: int, client_port: int) -> int | None:
    """Bytes of our loopback connection the server has not read yet (the kernel's
    receive queue of its end, from /proc/net/tcp); None while there is no such socket."""
    here = f"0100007F:{server_port:04X}"
    there = f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == here and fields[2] == there:
            return int(fields[4].split(":")[1], 16)
    return None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp")
async def test_sigterm_during_a_post_completes_it(
    start_server: Callable[..., AppServer], sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    server = start_server()
    body = b'{"device": "late", "metric": "m", "value": 5, "ts": %d}' % TS
    async with open_stream(server.url) as stream:
        await stream.next()  # ready: the stream tells us below when the worker starts shutting down
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(
                b"POST /api/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body[:10]
            )
            # The request is in flight: the worker accepted it and read the headers and part of the body.
            client_port = conn.getsockname()[1]
            wait_until(lambda: unread_by_server(server.port, client_port) == 0, 10, what="the server to read it")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            # The worker has seen the shutdown: it ends its streams with `bye`.
            await stream.take(1, types={"bye"}, within=5)
            conn.sendall(body[10:])
            response = conn.recv(4096)
    assert response.startswith(b"HTTP/1.1 202"), response
    assert b"late/m" in latest_values(sync_client, key_prefix)


def test_embedded_default_survives_kill_9(tmp_path: Path) -> None:
    """kill -9 the whole app and its embedded server; start again: the data is there (append-only file)."""
    import subprocess
    import sys

    from .servers import ROOT, free_port

    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDASH_") and k != "REDIS_URL"}
    env["LIVEDASH_AUTH"] = "off"  # this is about durability; test_security_e2e runs it with auth on

    def run() -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "--no-demo", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 20, what="livedash run")
        return proc, url

    proc, url = run()
    try:
        response = httpx.post(url + "/api/metrics", json={"device": "keep", "metric": "m", "value": 7, "ts": TS})
        assert response.status_code == 202
        aof = data_dir / "appendonlydir"
        # appendfsync everysec: wait (bounded) until the write is on disk.
        wait_until(lambda: any(b"keep/m" in f.read_bytes() for f in aof.glob("*.aof")), 5, what="the AOF write")
    finally:
        server = EmbeddedServer(data_dir)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        pid = server.pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not _alive(pid), 10, what="the embedded server to die")
    proc, url = run()
    try:
        latest = httpx.get(url + "/api/metrics/latest", params={"device": "keep"}).json()["series"]
        assert [(r["device"], r["value"]) for r in latest] == [("keep", 7.0)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        still_running = EmbeddedServer(data_dir).ping()
        if still_running:
            EmbeddedServer(data_dir).stop()
    assert not still_running, "livedash run stops the embedded server it started"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class TcpRedis:
    """A redis-server (or valkey-server) on a free loopback TCP port, restartable on that port."""

    def __init__(self, data_dir: Path) -> None:
        from app.storage.embedded import server_binary

        from .servers import free_port

        self.binary = server_binary()
        self.port = free_port()
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"],
            cwd=self.data_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                return bool(sync_redis.Redis(port=self.port, socket_timeout=1).ping())
            except sync_redis.RedisError:
                return False

        wait_until(answers, 15, what="redis-server to answer")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def tcp_redis(tmp_path: Path) -> Iterator[TcpRedis]:
    server = TcpRedis(tmp_path / "tcp-redis")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("transport", ["tcp", "unix"])
async def test_no_stray_errors_once_a_restarted_redis_answers(
    transport: str,
    request: pytest.FixtureRequest,
    start_server: Callable[..., AppServer],
) -> None:
    """Pooled connections to the old Redis process are dead after a restart; no request may pay for one."""
    redis_server = request.getfixturevalue("tcp_redis" if transport == "tcp" else "private_redis")
    server = start_server(REDIS_URL=redis_server.url)
    concurrency = 90

    async def burst(path: str) -> list[int]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as client:
            responses = await asyncio.gather(*(client.get(path) for _ in range(concurrency)))
        return [r.status_code for r in responses]

    await asyncio.to_thread(post_readings, server.url, [1.0])
    # Warm the pool: many connections open at once, all of them to this Redis process.
    assert set(await burst("/api/metrics/latest")) == {200}
    redis_server.stop()
    if transport == "tcp":
        redis_server.start()  # answers PING when this returns
    else:
        redis_server.ensure_running()
    statuses = await burst("/api/metrics/latest")
    assert statuses.count(200) == concurrency, sorted(statuses)
    # /readyz says what requests see: ready, and a request right after it succeeds.
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert set(await burst("/api/events?since=0-0")) == {200}


async def test_data_loss_is_told_at_once_and_before_any_new_event(
    private_redis: EmbeddedServer, on_private: Callable[..., AppServer]
) -> None:
    """After Redis loses its data, a stream's next event is `reset`, within about a second, even while
    writers go on: no event of the new dataset is delivered before it."""
    server = on_private(LIVEDASH_KEEPALIVE_INTERVAL="30")
    await asyncio.to_thread(post_readings, server.url, [1.0, 2.0])
    async with open_stream(server.url) as stream:
        await stream.next()
        client = sync_redis.Redis.from_url(private_redis.url)
        try:
            client.flushall()  # our own private server: it is ours to empty
        finally:
            client.close()
        lost_at = time.monotonic()
        # Writers go on at once: their events belong to the new dataset.
        await asyncio.to_thread(post_readings, server.url, [3.0, 4.0, 5.0])
        first = await stream.next(within=5)
        told_after = time.monotonic() - lost_at
        assert first.event == "reset", (first.event, first.data)
        assert payload(first)["reason"] == "epoch-changed"
        assert told_after < 1.5, told_after

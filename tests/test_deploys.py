"""Deploys and crashes as platforms really do them, against the Procfile's own command.

Heroku, honcho and systemd (``KillMode=control-group``) send SIGTERM to every
process of the group, not only to the master; a worker can die by kill -9; a
missing setting must stop the start loudly. Each test runs the ``web:`` line
of the ``Procfile`` through ``sh -c`` in a session of its own, as a platform
does, and signals the whole group with ``os.killpg``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis as sync_redis

from app.cli.serve import DEFAULT_BACKLOG
from app.storage.embedded import EmbeddedServer

from .servers import ROOT, free_port
from .sse_client import open_stream
from .test_faults import unread_by_server
from .test_stream import TS
from .waiting import async_wait_until, wait_until


def somaxconn() -> int:
    """The kernel's cap on a listen queue."""
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


def procfile_command() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise AssertionError("no web: line in the Procfile")


class ProcfileServer:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDASH_") and k not in ("REDIS_URL", "PORT")}
        base.pop("PROMETHEUS_MULTIPROC_DIR", None)
        # The platform's PATH finds this venv's python first.
        base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
        self.env = {**base, "PORT": str(self.port), "LIVEDASH_DEMO": "0", **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True) -> ProcfileServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["sh", "-c", procfile_command()],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait_ready:
            wait_until(self._ready, 30, what=f"the Procfile's server on {self.url}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def workers(self) -> list[int]:
        assert self.proc is not None
        # spawn's workers (not its resource tracker)
        children = psutil.Process(self.proc.pid).children()
        return [child.pid for child in children if "spawn_main" in " ".join(child.cmdline())]

    def killpg(self, signum: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signum)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with_group = self.proc.pid
            os.killpg(with_group, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def procfile(tmp_path: Path) -> Iterator[Callable[..., ProcfileServer]]:
    started: list[ProcfileServer] = []

    def start(wait_ready: bool = True, **env: str) -> ProcfileServer:
        server = ProcfileServer(env, tmp_path / f"procfile-{len(started)}.log")
        started.append(server)
        return server.start(wait_ready)

    yield start
    for server in started:
        server.cleanup()


@pytest.fixture
def shared_env(server_env: dict[str, str]) -> dict[str, str]:
    return {**server_env, "WEB_CONCURRENCY": "2"}


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp")
async def test_group_sigterm_is_a_graceful_deploy(
    procfile: Callable[..., ProcfileServer],
    shared_env: dict[str, str],
    sync_client: sync_redis.Redis,
    key_prefix: str,
) -> None:
    server = procfile(**shared_env)
    assert server.proc is not None
    # The Procfile `exec`s: the platform's process is the server itself, no shell in between.
    assert "app.cli" in psutil.Process(server.proc.pid).cmdline()
    assert len(server.workers()) == 2
    body = b'{"device": "deploy", "metric": "m", "value": 5, "ts": %d}' % TS
    async with (
        open_stream(server.url) as a,
        open_stream(server.url) as b,
        open_stream(server.url) as c,
        open_stream(server.url) as d,
    ):
        streams = (a, b, c, d)
        for stream in streams:
            await stream.next()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(
                b"POST /api/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body[:10]
            )
            client_port = conn.getsockname()[1]
            wait_until(lambda: unread_by_server(server.port, client_port) == 0, 10, what="the server to read it")
            # What Heroku, honcho and systemd's control-group stop do: every process gets SIGTERM.
            server.killpg(signal.SIGTERM)
            for stream in streams:
                bye = await stream.take(1, types={"bye"}, within=5)
                assert bye[0].retry is not None and bye[0].retry <= 1250
            conn.sendall(body[10:])
            response = conn.recv(4096)
    assert response.startswith(b"HTTP/1.1 202"), response
    assert b"deploy/m" in sync_client.hgetall(key_prefix + "latest")
    assert server.wait_exit(15) == 0


async def test_killed_worker_stops_the_server_with_a_failure_status(
    procfile: Callable[..., ProcfileServer], shared_env: dict[str, str]
) -> None:
    server = procfile(**shared_env)
    workers = server.workers()
    assert len(workers) == 2
    async with open_stream(server.url) as stream:
        await stream.next()
        os.kill(workers[0], signal.SIGKILL)
        # The survivor stops gracefully (a stream on it gets `bye`), then the master exits 1:
        # any supervisor (a PaaS, systemd's Restart=on-failure) restarts the server.
        code = await asyncio.to_thread(server.wait_exit, 15)
    assert code == 1
    assert "exited with status -9" in server.log_path.read_text()


def test_missing_secret_key_is_one_clear_line_and_a_failure(
    procfile: Callable[..., ProcfileServer], shared_env: dict[str, str]
) -> None:
    env = {**shared_env, "LIVEDASH_AUTH": "on"}
    server = procfile(wait_ready=False, **env)
    assert server.wait_exit(30) == 2
    output = server.log_path.read_text().strip()
    assert "Traceback" not in output
    assert output.count("\n") == 0 and "SECRET_KEY" in output, output


async def test_lone_sigterm_to_a_worker_replaces_it_gracefully(
    procfile: Callable[..., ProcfileServer], shared_env: dict[str, str]
) -> None:
    server = procfile(**{**shared_env, "WEB_CONCURRENCY": "1"})
    # A reconnect storm meets a listen queue of DEFAULT_BACKLOG, not hypercorn's 100 (ss: Send-Q of a listener).
    if shutil.which("ss"):  # iproute2; Debian images have it
        listening = subprocess.run(
            ["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert int(listening[2]) == min(DEFAULT_BACKLOG, somaxconn()), listening
    [worker] = server.workers()
    async with open_stream(server.url) as stream:
        await stream.next()
        os.kill(worker, signal.SIGTERM)
        await stream.take(1, types={"bye"}, within=5)

    def replaced() -> bool:
        now = server.workers()
        return len(now) == 1 and now[0] != worker

    wait_until(replaced, 20, what="a new worker")
    await async_wait_until(lambda: asyncio.to_thread(server._ready), 20, what="the new worker to serve")
    server.killpg(signal.SIGTERM)
    assert server.wait_exit(15) == 0


def test_without_redis_url_nothing_outlives_the_server(
    procfile: Callable[..., ProcfileServer], server_env: dict[str, str], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in server_env.items() if k != "REDIS_URL"}
    server = procfile(LIVEDASH_DATA_DIR=str(data_dir), TMPDIR=str(scratch), **env)
    embedded = EmbeddedServer(data_dir)
    assert embedded.ping()
    assert [p.name for p in scratch.iterdir()], "the metrics directory is made under TMPDIR"
    response = httpx.post(server.url + "/api/metrics", json={"device": "d", "metric": "m", "value": 1})
    assert response.status_code == 202
    server.killpg(signal.SIGTERM)
    assert server.wait_exit(20) == 0
    assert not embedded.ping(), "the embedded server stops with the app that started it"
    assert list(scratch.iterdir()) == [], "no temporary directory is left behind"

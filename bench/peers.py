"""The servers under test, each started as our own subprocess on 127.0.0.1.

* ``livedash`` — this repo, started as the Procfile starts it
  (``python -m app.cli serve`` with the Procfile's flags and default
  settings) against the bench's private Redis, under a key prefix of its own.
* ``naive`` — ``bench/baselines/naive_quart.py`` under hypercorn with the same
  worker class, keep-alive and listen backlog.
* ``nchan`` — nginx with the Nchan module, config written to a temp dir.

A peer that cannot be had (no nginx, no module) raises ``Unavailable`` from
``start``; the runner records that in the table and carries on. ``stop``
always takes down the whole process group it started.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from app.cli.serve import DEFAULT_BACKLOG
from app.storage.embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
NCHAN_MODULE_PATHS = ("/usr/lib/nginx/modules/ngx_nchan_module.so", "/usr/share/nginx/modules/ngx_nchan_module.so")
START_TIMEOUT = 30.0
BACKLOG = DEFAULT_BACKLOG


class Unavailable(RuntimeError):
    """This peer cannot run on this machine (the message says why)."""


@contextmanager
def private_redis(prefix: str) -> Iterator[tuple[Path, EmbeddedServer]]:
    """A temporary work directory and a private embedded Redis in it, running; both gone at the end."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        redis = EmbeddedServer(workdir / "redis")
        redis.ensure_running()
        try:
            yield workdir, redis
        finally:
            redis.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reading(seq: int) -> dict[str, object]:
    # 20 series, so conflation (if any) has something to keep per series. The
    # marker the readers count rides in the unit ("#<seq>"), not in a tag: tags
    # are series dimensions, so a tag per reading would make a series per reading.
    return {
        "device": f"bench-{seq % 20}",
        "metric": "load",
        "value": seq,
        "ts": int(time.time() * 1000),
        "unit": f"#{seq}",
    }


def reading_body(seqs: list[int]) -> bytes:
    """One reading (an object) or a batch (a list): the same shape every peer receives."""
    if len(seqs) == 1:
        return orjson.dumps(_reading(seqs[0]))
    return orjson.dumps([_reading(s) for s in seqs])


@dataclass
class Peer:
    name: str
    workers: int
    stream_path: str
    publish_path: str
    batch_ok: bool = True
    health_path: str = "/healthz"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    body_for: Callable[[list[int]], bytes] = reading_body
    # Extra request header lines (CRLF-terminated) for streams and for POSTs: credentials.
    read_headers: bytes = b""
    write_headers: bytes = b""
    # Request headers for GET /metrics (livedash's GC and loop-lag figures); None: no such figures.
    metrics_headers: dict[str, str] | None = None
    _command: tuple[list[str], dict[str, str]] = ([], {})

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _spawn(self, cmd: list[str], env: dict[str, str], log_path: Path, wait: bool = True) -> None:
        self.log_path = log_path
        self._command = (cmd, env)
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        if wait:
            self._wait_listening()

    def respawn(self, wait: bool = True) -> None:
        """Start the same command again on the same port (after ``stop``): a fresh process, as a deploy gives."""
        cmd, env = self._command
        assert self.log_path is not None and self.proc is None
        self._spawn(cmd, env, self.log_path, wait)

    def wait_listening_socket(self) -> float:
        """Wait (up to START_TIMEOUT) until the port is in LISTEN state; returns that perf_counter time."""
        deadline = time.monotonic() + START_TIMEOUT
        hex_port = f":{self.port:04X} "
        while time.monotonic() < deadline:
            # /proc/net/tcp state 0A is LISTEN: no connection attempt, so nothing competes with the clients.
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
                fields = line.split()
                if hex_port in fields[1] + " " and fields[3] == "0A":
                    return time.perf_counter()
            time.sleep(0.01)
        raise Unavailable(f"{self.name} did not listen within {START_TIMEOUT}s: {self._log_tail()}")

    def terminate_group(self) -> None:
        """SIGTERM to the whole process group, as a platform's deploy sends it; does not wait."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)

    def wait_exit(self, timeout: float = 30) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Unavailable(f"{self.name} exited with {self.proc.returncode}: {self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    # A GET on the stream path proves the app answers, not just the socket.
                    request = b"GET %s HTTP/1.1\r\nHost: x\r\n%sAccept: text/event-stream\r\n\r\n" % (
                        self.stream_path.encode(),
                        self.read_headers,
                    )
                    sock.sendall(request)
                    if sock.recv(12).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise Unavailable(f"{self.name} did not answer within {START_TIMEOUT}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")[-1500:]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None


# The Procfile's flags (bar the address). The listen backlog is livedash serve's default, given to
# the naive peer too so both meet a reconnect storm with the same kernel queue.
def _server_flags(port: int, workers: int) -> list[str]:
    return [
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "uvloop",
        "--graceful-timeout",
        "5",
        "--keep-alive",
        "20",
    ]


def _livedash_serve(port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "app.cli", "serve", *_server_flags(port, workers)]


def _livedash_uvicorn(port: int, workers: int) -> list[str]:
    """livedash's app under uvicorn + httptools: the side-by-side evidence the issue asks for, not how it ships."""
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("httptools") is None:
        raise Unavailable("uvicorn and httptools are not installed (pip install uvicorn httptools)")
    return [
        sys.executable, "-m", "uvicorn", "app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--backlog", str(BACKLOG),
        "--timeout-graceful-shutdown", "5", "--log-level", "warning",
    ]  # fmt: skip


def _hypercorn(app_path: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "hypercorn", app_path, *_server_flags(port, workers), "--backlog", str(BACKLOG)]


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LIVEDASH_") and k not in ("REDIS_URL", "PORT")}


def start_livedash(
    workdir: Path,
    redis_url: str,
    workers: int,
    extra_env: dict[str, str] | None = None,
    name: str = "livedash",
    peer: Peer | None = None,
    server: str = "serve",
) -> Peer:
    peer = peer or Peer(name, workers, "/api/stream", "/api/metrics", port=free_port())
    env = _base_env() | {
        "REDIS_URL": redis_url,
        "LIVEDASH_KEY_PREFIX": f"bench:{uuid.uuid4().hex[:10]}:",
        "LIVEDASH_DEMO": "0",
        "LIVEDASH_AUTH": "off",
        "LIVEDASH_MAX_STREAMS": "20000",
        "LIVEDASH_DATA_DIR": str(workdir / "livedash-data"),
    }
    env.update(extra_env or {})
    if peer.metrics_headers is None:
        peer.metrics_headers = {}
    command = _livedash_uvicorn if server == "uvicorn" else _livedash_serve
    peer._spawn(command(peer.port, workers), env, workdir / f"{name}-w{workers}.log")
    return peer


def start_livedash_auth(
    workdir: Path, redis_url: str, workers: int, extra_env: dict[str, str] | None = None, server: str = "serve"
) -> Peer:
    """livedash with authentication on, as in production: streams with a viewer
    token, readings with a device token (a Redis lookup and a rate-limit step
    per POST). The write and stream-per-token limits are raised out of the
    way: the bench measures what the checks cost, not the limits refusing."""
    admin = secrets.token_urlsafe(24)
    env = {
        "LIVEDASH_AUTH": "on",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "LIVEDASH_ADMIN_TOKEN": admin,
        "LIVEDASH_WRITE_RATE_LIMIT": "1000000000",
        # One viewer token opens every stream of a scenario.
        "LIVEDASH_STREAMS_PER_TOKEN": "20000",
    } | (extra_env or {})
    bootstrap = b"Authorization: Bearer %s\r\n" % admin.encode()
    name = "livedash-auth" if server == "serve" else f"livedash-{server}"
    peer = Peer(
        name,
        workers,
        "/api/stream",
        "/api/metrics",
        port=free_port(),
        read_headers=bootstrap,
        metrics_headers={"Authorization": f"Bearer {admin}"},
    )
    start_livedash(workdir, redis_url, workers, env, name=name, peer=peer, server=server)
    peer.read_headers = _bearer(_create_token(peer.port, admin, "viewer"))
    peer.write_headers = _bearer(_create_token(peer.port, admin, "device"))
    return peer


def _bearer(token: str) -> bytes:
    return b"Authorization: Bearer %s\r\n" % token.encode()


def _create_token(port: int, admin: str, role: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/tokens",
        data=orjson.dumps({"role": role, "name": f"bench-{role}"}),
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(orjson.loads(response.read())["token"])


def start_naive(workdir: Path, redis_url: str, workers: int) -> Peer:
    peer = Peer("naive-quart", workers, "/stream", "/publish", port=free_port())
    env = _base_env() | {"REDIS_URL": redis_url, "NAIVE_CHANNEL": f"naive-bench-{uuid.uuid4().hex[:8]}"}
    cmd = _hypercorn("bench.baselines.naive_quart:app", peer.port, workers)
    peer._spawn(cmd, env, workdir / f"naive-w{workers}.log")
    return peer


def start_bare(workdir: Path, workers: int, server: str) -> Peer:
    """``baselines/bare_sse.py`` under hypercorn or uvicorn: what the server alone costs per stream."""
    peer = Peer(f"bare-{server}", workers, "/sse", "/publish", port=free_port())
    if server == "uvicorn":
        if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("httptools") is None:
            raise Unavailable("uvicorn and httptools are not installed (pip install uvicorn httptools)")
        cmd = [
            sys.executable, "-m", "uvicorn", "bench.baselines.bare_sse:app", "--host", "127.0.0.1",
            "--port", str(peer.port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
            "--backlog", str(BACKLOG), "--log-level", "warning",
        ]  # fmt: skip
    else:
        cmd = _hypercorn("bench.baselines.bare_sse:app", peer.port, workers)
    peer._spawn(cmd, _base_env(), workdir / f"bare-{server}-w{workers}.log")
    return peer


NGINX_CONF = """\
load_module {module};
worker_processes {workers};
worker_rlimit_nofile 19000;
daemon off;
user root;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 18000; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  nchan_shared_memory_size 256M;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /health {{ return 200 "ok"; }}
    location = /pub {{
      nchan_publisher;
      nchan_channel_id bench;
      nchan_message_buffer_length 100;
    }}
    location = /sub {{
      nchan_subscriber eventsource;
      nchan_subscriber_first_message newest;
      nchan_channel_id bench;
    }}
  }}
}}
"""


def start_nchan(workdir: Path, workers: int) -> Peer:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    module = next((p for p in NCHAN_MODULE_PATHS if os.path.exists(p)), None)
    if nginx is None or module is None:
        raise Unavailable("nginx or the Nchan module is not installed (apt-get install nginx-light libnginx-mod-nchan)")
    peer = Peer("nginx-nchan", workers, "/sub", "/pub", batch_ok=False, health_path="/health", port=free_port())
    confdir = workdir / f"nginx-w{workers}"
    confdir.mkdir(exist_ok=True)
    conf = confdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(module=module, workers=workers, dir=confdir, port=peer.port))
    peer._spawn(
        [nginx, "-p", str(confdir), "-e", str(confdir / "nginx-error.log"), "-c", str(conf)],
        _base_env(),
        confdir / "stdout.log",
    )
    return peer

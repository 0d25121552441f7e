"""Real server processes for end-to-end tests: hypercorn running the app.

``AppServer`` starts ``python -m hypercorn 'app:create_app()'`` on a free
loopback port with the given environment, waits (bounded) until ``/readyz``
answers, and stops it with SIGTERM (then SIGKILL) when the test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import httpx

from .waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AppServer:
    def __init__(
        self, env: dict[str, str], workers: int = 1, log_path: Path | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.env = env
        self.workers = workers
        self.log_path = log_path
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> AppServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDASH_") and k not in ("REDIS_URL", "PORT")}
        env.update(self.env)
        env.setdefault("LIVEDASH_DEMO", "0")
        cmd = [
            sys.executable,
            "-m",
            "hypercorn",
            "app:create_app()",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "uvloop",
            "--graceful-timeout",
            "3",
            *self.extra_args,
        ]
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._ready, timeout=timeout, what=f"app server on {self.url}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"app server exited with {self.proc.returncode}; log: {self.log_path}")
        try:
            return httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            # Like a PaaS or Kubernetes: SIGTERM to hypercorn's parent, which
            # tells its workers to shut down gracefully.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        if self._log:
            self._log.close()
        code = self.proc.returncode
        self.proc = None
        return code

    def worker_pids(self) -> list[int]:
        import psutil

        assert self.proc is not None
        return [
            child.pid
            for child in psutil.Process(self.proc.pid).children(recursive=True)
            if "python" in child.name() or "hypercorn" in " ".join(child.cmdline())
        ]

    def kill(self) -> None:
        """SIGKILL the whole process group (hypercorn and its workers)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def wait_port_closed(port: int, timeout: float = 10.0) -> None:
    def closed() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) != 0

    wait_until(closed, timeout=timeout, what=f"port {port} to close")

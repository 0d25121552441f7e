"""The ``livedash`` console script.

``livedash run`` starts the embedded Redis-protocol server (unless REDIS_URL
is set), then hypercorn with the app, and stops the server it started when
hypercorn exits. The demo simulator is on by default here, off in production.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from hypercorn.config import Config
from pydantic import ValidationError

from app.cli.clients import add_client_commands
from app.cli.first_start import add_token_commands, prepare_run
from app.cli.serve import EXIT_CONFIG, add_serve_command, run_master, serve, settings_problem
from app.ops.telemetry import prepare_multiproc_dir
from app.settings import Settings
from app.storage.embedded import EmbeddedServer

log = logging.getLogger("livedash")

GRACEFUL_TIMEOUT = 5.0
KEEP_ALIVE_TIMEOUT = 20.0


def _worker_class() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def cmd_run(args: argparse.Namespace) -> int:
    # Children (hypercorn workers) build their own Settings from the
    # environment, so the command line is passed on through it.
    os.environ["LIVEDASH_DEMO"] = "1" if args.demo else "0"
    if args.data_dir:
        os.environ["LIVEDASH_DATA_DIR"] = args.data_dir
    settings = Settings()
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    workers = args.workers or settings.web_concurrency

    server: EmbeddedServer | None = None
    if settings.embedded:
        server = EmbeddedServer(settings.data_dir)
        started = server.ensure_running()
        log.info(
            "embedded Redis-protocol server %s at %s (data in %s)",
            "started" if started else "already running",
            server.url,
            server.data_dir,
        )
        if not started:
            server = None  # someone else's: leave it running
    # Auth on by default: a secret key for the workers, and the first admin's login link.
    security_lines = prepare_run(settings, settings.redis_url or EmbeddedServer(settings.data_dir).url, host, port)
    # One metrics directory per run, emptied: /metrics then adds up this run's workers (app/ops/telemetry.py).
    metrics_dir = settings.prometheus_multiproc_dir or settings.data_dir / "prometheus"
    prepare_multiproc_dir(metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    config = Config()
    config.application_path = "app:create_app()"
    config.bind = [f"{host}:{port}"]
    # Always at least one worker process: hypercorn's parent then handles
    # signals and workers see its shutdown event (see app/ops/shutdown.py).
    config.workers = max(1, workers)
    config.worker_class = _worker_class()
    config.graceful_timeout = GRACEFUL_TIMEOUT
    # As in the Procfile: idle (and half-sent) connections close after this.
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT
    config.accesslog = None
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    # With auth on, curl needs a token (the first start prints one; `livedash token create` makes more).
    credential = " -H 'Authorization: Bearer $TOKEN'" if settings.auth_on else ""
    print(
        f"livedash: dashboard on http://{shown}:{port}/  (stream: curl -N{credential} http://{shown}:{port}/api/stream)",
        flush=True,
    )
    print("\n".join(security_lines), flush=True)
    try:
        return run_master(config)
    finally:
        if server is not None:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: noise in `livedash tail` and `simulate` output.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    parser = argparse.ArgumentParser(prog="livedash", description="SSE-first live dashboard server")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the server (embedded Redis unless REDIS_URL is set)")
    run.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="listen port (default $PORT or 8000)")
    run.add_argument("--workers", type=int, default=None, help="hypercorn workers (default $WEB_CONCURRENCY or 1)")
    run.add_argument("--data-dir", default=None, help="where the embedded server keeps its files")
    run.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the built-in sensor simulator (default on)",
    )
    run.set_defaults(func=cmd_run)
    add_serve_command(sub)
    add_token_commands(sub)
    add_client_commands(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as exc:
        # A malformed variable (PORT=abc): one line, not a traceback.
        print(f"livedash: {settings_problem(exc)}", file=sys.stderr, flush=True)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())

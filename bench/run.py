"""``python -m bench.run``: the same load against livedash, a naive Quart server and nginx + Nchan.

    python -m bench.run                 # the full matrix (~12 minutes on 2 cores)
    python -m bench.run --quick         # a smoke run (~2 minutes)
    python -m bench.run --scenarios fanout,ingest --peers livedash,naive

Peers run one after another (never at once: they would share the cores);
each is started as our own subprocess on 127.0.0.1 and always stopped. The
livedash and naive peers use a private embedded Redis started for this run
and stopped at the end (nothing else is ever flushed or touched). Prints
three tables and writes everything to ``bench/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import scenarios as sc_mod
from .peers import (
    Peer,
    Unavailable,
    private_redis,
    start_bare,
    start_livedash,
    start_livedash_auth,
    start_naive,
    start_nchan,
)
from .report import render
from .scenarios import Scenario

RESULTS = Path(__file__).resolve().parent / "results"
PEERS = ("livedash", "naive", "nchan")  # also: livedash-unpaced, livedash-auth, livedash-uvicorn, bare-*
# livedash with pacing off: one write per wake-up, as before the fast path.
UNPACED = {"LIVEDASH_STREAM_MAX_RATE": "0", "LIVEDASH_STREAM_WRITE_BUDGET": "0"}


def matrix(quick: bool, kinds: set[str], max_streams: int, duration: float | None) -> list[Scenario]:
    d = duration or (4.0 if quick else 8.0)
    out: list[Scenario] = []
    if "fanout" in kinds:
        grid = [(100, 10), (1000, 100)] if quick else [(100, 10), (100, 100), (1000, 10), (1000, 100), (5000, 10)]
        out += [Scenario("fanout", streams=n, rate=r, duration=d) for n, r in grid if n <= max_streams]
    if "ingest" in kinds:
        out += [
            Scenario("ingest-single", duration=d / 2, batch=1, connections=16),
            Scenario("ingest-batch", duration=d / 2, batch=500, connections=4),
        ]
    if "idle" in kinds:
        out.append(Scenario("idle", streams=min(2000 if quick else 10_000, max_streams), duration=3.0))
    if "storm" in kinds:
        n = min(2000 if quick else 10_000, max_streams)
        out += [Scenario("open", streams=n), Scenario("restart", streams=n)]
    if "workers" in kinds:
        out += [
            Scenario("fanout", workers=2, streams=min(1000, max_streams), rate=100, duration=d),
            Scenario("ingest-single", workers=2, duration=d / 2, batch=1, connections=16),
        ]
    return out


def raise_fd_limit() -> None:
    # 10,000 streams need 10,000 sockets here and as many in the server,
    # which inherits this limit from us.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    kinds = set(args.scenarios.split(","))
    plan = matrix(args.quick, kinds, args.max_streams, args.duration)
    peers = [p for p in args.peers.split(",") if p]
    rows: list[dict[str, Any]] = []
    extra = dict(item.split("=", 1) for item in args.livedash_env)
    with private_redis("livedash-bench-") as (workdir, redis):
        redis_pid = redis.pid()
        starters: dict[str, Callable[[int], Peer]] = {
            "livedash": lambda w: start_livedash(workdir, redis.url, w, extra),
            "livedash-unpaced": lambda w: start_livedash(
                workdir, redis.url, w, extra | UNPACED, name="livedash-unpaced"
            ),
            "livedash-auth": lambda w: start_livedash_auth(workdir, redis.url, w, extra),
            "livedash-uvicorn": lambda w: start_livedash_auth(workdir, redis.url, w, extra, server="uvicorn"),
            "naive": lambda w: start_naive(workdir, redis.url, w),
            "bare-hypercorn": lambda w: start_bare(workdir, w, "hypercorn"),
            "bare-uvicorn": lambda w: start_bare(workdir, w, "uvicorn"),
            "nchan": lambda w: start_nchan(workdir, w),
        }
        for workers in sorted({s.workers for s in plan}):
            group = [s for s in plan if s.workers == workers]
            for name in peers:
                rows += await _run_peer(name, starters[name], workers, group, redis_pid, workdir)
    return rows


async def _run_peer(
    name: str, start: Callable[[int], Peer], workers: int, group: list[Scenario], redis_pid: int | None, workdir: Path
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base = {"peer": name, "workers": workers}
    try:
        peer = start(workers)
    except Unavailable as exc:
        print(f"  {name}: unavailable: {exc}", flush=True)
        return [base | _describe(s) | {"unavailable": str(exc)} for s in group]
    used = False
    try:
        for scenario in group:
            if scenario.fresh and used:
                peer.stop()
                peer.respawn()
            used = True
            print(f"  {name:12} {scenario.label} ...", end="", flush=True)
            t0 = time.monotonic()
            try:
                result = await sc_mod.run(peer, scenario, redis_pid if name != "nchan" else None)
            except Exception as exc:  # one failing scenario must not lose the rest of the run
                traceback.print_exc(file=sys.stderr)
                result = {"error": f"{type(exc).__name__}: {exc}"}
            print(f" {time.monotonic() - t0:.0f}s", flush=True)
            rows.append(base | _describe(scenario) | result)
            if peer.proc is not None and peer.proc.poll() is not None:
                print(f"  {name} died; see {peer.log_path}", flush=True)
                break
    finally:
        peer.stop()
    return rows


def _describe(s: Scenario) -> dict[str, Any]:
    return {
        "scenario": s.kind,
        "label": s.label,
        "streams": s.streams,
        "rate": s.rate,
        "duration": s.duration,
        "batch": s.batch,
        "connections": s.connections,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run: fewer, shorter scenarios")
    parser.add_argument("--scenarios", default="fanout,ingest,idle,storm,workers", help="comma list of: %(default)s")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma list of: %(default)s")
    parser.add_argument("--max-streams", type=int, default=10_000, help="cap on N for every scenario")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load per fan-out scenario")
    parser.add_argument(
        "--livedash-env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for livedash"
    )
    parser.add_argument("--json", type=Path, default=None, help="where to write results (default bench/results/)")
    args = parser.parse_args(argv)
    raise_fd_limit()
    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    started = time.strftime("%Y%m%d-%H%M%S")
    rows = runner(run_all(args))
    command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    print(render(rows))
    out = args.json or RESULTS / f"{started}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": command.strip(), "started": started, "python": platform.python_version(), "cpus": _cpus()}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"results: {out}")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())

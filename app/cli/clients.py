"""``livedash simulate`` and ``livedash tail``: HTTP clients of any livedash server.

Kept apart from ``cli.py`` (which starts servers) so these need nothing but
httpx: they never import the app, its settings or Redis.
"""

from __future__ import annotations

import argparse
from typing import Any


def cmd_simulate(args: argparse.Namespace) -> int:
    from app.cli.simulate import Simulator

    devices = tuple(d.strip() for d in (args.devices or "").split(",") if d.strip())
    simulator = Simulator(args.url, args.token, args.interval, args.count, devices, args.seed)
    try:
        return simulator.batches()
    except KeyboardInterrupt:
        return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from app.cli.tail import Tail

    tail = Tail(args.url, args.topics, args.token, args.last_event_id, args.count, args.raw)
    try:
        return tail.run()
    except KeyboardInterrupt:
        return 0


def add_client_commands(sub: Any) -> None:
    simulate = sub.add_parser("simulate", help="post the demo's simulated sensor readings to a server over HTTP")
    simulate.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default http://127.0.0.1:8000)")
    simulate.add_argument("--token", default=None, help="a Bearer token with write access")
    simulate.add_argument("--interval", type=float, default=1.0, help="seconds between batches (default 1)")
    simulate.add_argument("--count", type=int, default=None, help="stop after this many batches (default: never)")
    simulate.add_argument("--devices", default=None, help="comma list of devices (default pump-1,pump-2,fan-3)")
    simulate.add_argument("--seed", type=int, default=None, help="random seed, for repeatable values")
    simulate.set_defaults(func=cmd_simulate)

    tail = sub.add_parser("tail", help="follow a server's event stream in the terminal (resumes after a drop)")
    tail.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default http://127.0.0.1:8000)")
    tail.add_argument("--topics", default=None, help="comma list of topic patterns, e.g. device/pump-*")
    tail.add_argument("--token", default=None, help="a Bearer token with read access")
    tail.add_argument("--last-event-id", default=None, help="start after this event id (replays what came since)")
    tail.add_argument("--count", type=int, default=None, help="exit after this many events (default: never)")
    tail.add_argument("--raw", action="store_true", help="print each event's JSON instead of a readable line")
    tail.set_defaults(func=cmd_tail)

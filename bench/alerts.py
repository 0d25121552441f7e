"""``python -m bench.alerts``: alert delivery latency and ingest throughput with rules and channels.

    python -m bench.alerts [--workers 2] [--seconds 6] [--transitions 100] [--rules 100]

One livedash (``--workers`` hypercorn workers) on a private embedded Redis
and a webhook receiver on 127.0.0.1, both started here and stopped at the
end. Three phases:

1. ingest, no rules: closed-loop POSTs of single readings (16 connections)
   and of batches of 500 (4 connections) over 20 series (bench.peers);
2. the same with ``--rules`` threshold rules on those series (5 per series,
   never crossed, so every reading is evaluated against 5 rules and nothing
   fires) each naming 2 channels (a webhook and a chat webhook);
3. latency: one rule with both channels, ``--transitions`` readings that
   alternate 90 / 10 (each a transition), 50 ms apart; each delivery's
   latency is its arrival at the receiver minus the transition's time (the
   ``alert`` event id's milliseconds, Redis's clock, same host).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from app.storage.embedded import EmbeddedServer

from .loadgen import Sent, publish_closed_loop
from .peers import reading_body, start_livedash

RESULTS = Path(__file__).resolve().parent / "results"


class Receiver:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.arrivals.append((time.time(), self.headers.get("X-Livedash-Event", "")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


async def ingest(port: int, seconds: float) -> dict[str, float]:
    out = {}
    for name, batch, connections in (("single", 1, 16), ("batch500", 500, 4)):
        sent = Sent()
        started = time.perf_counter()
        await publish_closed_loop("127.0.0.1", port, "/api/metrics", reading_body, batch, seconds, sent, connections)
        out[f"{name}_readings_per_s"] = round(sent.readings / (time.perf_counter() - started))
        out[f"{name}_failed"] = sent.failed
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    redis = EmbeddedServer(workdir / "redis")
    redis.ensure_running()
    receiver = Receiver()
    peer = start_livedash(workdir, redis.url, args.workers, {"LIVEDASH_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"})
    base = f"http://127.0.0.1:{peer.port}"
    result: dict[str, Any] = {"workers": args.workers, "seconds": args.seconds, "load_avg_at_start": os.getloadavg()[0]}
    try:
        result["ingest_no_rules"] = await ingest(peer.port, args.seconds)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            channels = []
            for kind in ("webhook", "chat"):
                answer = await http.post("/api/alerts/channels", json={"name": kind, "kind": kind, "url": receiver.url})
                channels.append(answer.raise_for_status().json()["id"])
            for i in range(args.rules):
                rule = {"device": f"bench-{i % 20}", "metric": "load", "op": "above", "threshold": 1e15 + i}
                (await http.post("/api/alerts/rules", json={**rule, "channels": channels})).raise_for_status()
            result["ingest_with_rules"] = await ingest(peer.port, args.seconds)
            result["rules"], result["channels"] = args.rules, len(channels)

            receiver.arrivals.clear()
            rule = {"device": "lat", "metric": "temp", "op": "above", "threshold": 50, "channels": channels}
            (await http.post("/api/alerts/rules", json=rule)).raise_for_status()
            for i in range(args.transitions):
                reading = {"device": "lat", "metric": "temp", "value": 90 if i % 2 == 0 else 10}
                (await http.post("/api/metrics", json=reading)).raise_for_status()
                await asyncio.sleep(0.05)
            for _ in range(600):  # at most a minute for the last deliveries
                if len(receiver.arrivals) >= 2 * args.transitions:
                    break
                await asyncio.sleep(0.1)
        latencies = [(at - int(event.split("-")[0]) / 1000) * 1000 for at, event in receiver.arrivals if event]
        result["delivery"] = {
            "transitions": args.transitions,
            "deliveries": len(latencies),
            "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1),
        }
    finally:
        peer.stop()
        receiver.server.shutdown()
        redis.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--transitions", type=int, default=100)
    parser.add_argument("--rules", type=int, default=100)
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"alerts-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

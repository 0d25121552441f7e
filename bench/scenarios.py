"""One scenario against one running peer: set up the load, measure, tear down.

Every scenario is bounded in time (``duration`` plus a bounded drain) and in
count (``streams``), and closes every socket it opened before returning.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
from dataclasses import dataclass
from typing import Any

from .loadgen import Sent, open_readers, publish_closed_loop, publish_paced
from .peers import Peer
from .procstat import run_queue_wait, steal_seconds, tree_usage
from .server_stalls import figures as stall_figures
from .server_stalls import snapshot as stall_snapshot
from .storm import open_storm, restart_storm

HOST = "127.0.0.1"
DRAIN_TIMEOUT = 5.0
SETTLE = 1.0
LATENCY_SAMPLE_STREAMS = 100
STORM_WITHIN = 60.0


@dataclass(frozen=True)
class Scenario:
    kind: str  # "fanout" | "ingest-single" | "ingest-batch" | "idle" | "open" | "restart"
    workers: int = 1
    streams: int = 0
    rate: float = 0.0
    duration: float = 10.0
    batch: int = 1
    connections: int = 8

    @property
    def fresh(self) -> bool:
        """Run on a newly started server: memory and storms must not ride on an earlier scenario's heap."""
        return self.kind in ("idle", "open", "restart")

    @property
    def label(self) -> str:
        if self.kind == "fanout":
            return f"fanout N={self.streams} R={self.rate:g}/s w={self.workers}"
        if self.kind in ("idle", "open", "restart"):
            return f"{self.kind} N={self.streams} w={self.workers}"
        return f"{self.kind} x{self.batch} c={self.connections} w={self.workers}"


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


async def run(peer: Peer, sc: Scenario, redis_pid: int | None) -> dict[str, Any]:
    if sc.kind == "fanout":
        return await _fanout(peer, sc, redis_pid)
    if sc.kind == "idle":
        return await _idle(peer, sc)
    if sc.kind == "open":
        return await open_storm(peer, sc.streams, within=STORM_WITHIN)
    if sc.kind == "restart":
        return await restart_storm(peer, sc.streams, within=STORM_WITHIN)
    return await _ingest(peer, sc, redis_pid)


async def _fanout(peer: Peer, sc: Scenario, redis_pid: int | None) -> dict[str, Any]:
    sent = Sent()
    before = tree_usage(peer.pid)
    # Collections while the streams open (and of the last scenario's closed ones) count apart from the load's.
    stalls_open = await stall_snapshot(peer)
    readers = await open_readers(
        HOST, peer.port, peer.stream_path, sc.streams, sent, LATENCY_SAMPLE_STREAMS, headers=peer.read_headers
    )
    try:
        await asyncio.sleep(SETTLE)
        opened = tree_usage(peer.pid)
        stalls0 = await stall_snapshot(peer)
        redis0, lg0 = tree_usage(redis_pid).cpu_seconds, _cpu_self()
        lg_wait0, steal0 = run_queue_wait(os.getpid()), steal_seconds()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await publish_paced(
            HOST,
            peer.port,
            peer.publish_path,
            peer.body_for,
            sc.rate,
            sc.duration,
            sent,
            sc.connections,
            headers=peer.write_headers,
        )
        expected = sent.ok * sc.streams
        deadline = loop.time() + DRAIN_TIMEOUT
        # Bounded polling: the counters live in protocol callbacks, there is nothing to await.
        while loop.time() < deadline and sum(r.events + r.skipped for r in readers) < expected:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        elapsed = loop.time() - t0
        after = tree_usage(peer.pid)
        redis_cpu = tree_usage(redis_pid).cpu_seconds - redis0
        lg_cpu = _cpu_self() - lg0
        lg_wait, steal = run_queue_wait(os.getpid()) - lg_wait0, steal_seconds() - steal0
        stalls1 = await stall_snapshot(peer)
    finally:
        for reader in readers:
            reader.close()
    await asyncio.sleep(0.5)
    delivered = sum(r.events for r in readers)
    skipped = sum(r.skipped for r in readers)
    latencies = [x for r in readers for x in r.latencies]
    cpu = after.cpu_seconds - opened.cpu_seconds
    during_open = {
        f"open_{key}": value
        for key, value in stall_figures(peer, stalls_open, stalls0).items()
        if key in ("gc2_count", "gc_pause_s", "gc_max", "lag_max")
    }
    row = {
        "posted": sent.ok,
        "post_failed": sent.failed,
        "expected": expected,
        "delivered": delivered,
        "conflated": skipped,
        "delivered_pct": round(100 * (delivered + skipped) / expected, 2) if expected else None,
        "lat_p50_ms": _ms(_pct(latencies, 0.5)),
        "lat_p99_ms": _ms(_pct(latencies, 0.99)),
        "lat_max_ms": _ms(max(latencies, default=None)),
        "post_p50_ms": _ms(_pct(sent.post_latency, 0.5)),
        "post_p99_ms": _ms(_pct(sent.post_latency, 0.99)),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_pct": round(100 * cpu / elapsed, 1),
        "us_cpu_per_event": round(1e6 * cpu / delivered, 2) if delivered else None,
        "events_per_cpu_s": round(delivered / cpu) if cpu > 0 else None,
        "redis_us_per_event": round(1e6 * redis_cpu / delivered, 2) if delivered and redis_pid else None,
        "rss_kib_per_stream": round((opened.rss_bytes - before.rss_bytes) / 1024 / sc.streams, 2),
        "loadgen_cpu_pct": round(100 * lg_cpu / elapsed, 1),
        # Time ready to run but without a CPU (other processes had it), per wall second: 100 = one thread-second.
        "server_wait_pct": round(100 * (after.wait_seconds - opened.wait_seconds) / elapsed, 1),
        "loadgen_wait_pct": round(100 * lg_wait / elapsed, 1),
        # A VM's CPUs taken by other guests (all CPUs; 100 = one CPU): a wait no process here shows.
        "steal_pct": round(100 * steal / elapsed, 1),
        "dropped_streams": sum(1 for r in readers if r.closed),
    }
    return row | stall_figures(peer, stalls0, stalls1) | during_open


async def _idle(peer: Peer, sc: Scenario) -> dict[str, Any]:
    sent = Sent()
    before = tree_usage(peer.pid)
    readers = await open_readers(
        HOST, peer.port, peer.stream_path, sc.streams, sent, 0, within=120, headers=peer.read_headers
    )
    try:
        await asyncio.sleep(SETTLE * 2)
        opened = tree_usage(peer.pid)
        await asyncio.sleep(sc.duration)
        later = tree_usage(peer.pid)
        still_open = sum(1 for r in readers if not r.closed)
    finally:
        for reader in readers:
            reader.close()
    await asyncio.sleep(1.0)
    return {
        "rss_before_mib": round(before.rss_bytes / 2**20, 1),
        "rss_open_mib": round(opened.rss_bytes / 2**20, 1),
        "rss_kib_per_stream": round((opened.rss_bytes - before.rss_bytes) / 1024 / sc.streams, 2),
        "idle_cpu_pct": round(100 * (later.cpu_seconds - opened.cpu_seconds) / sc.duration, 1),
        "open_streams": still_open,
    }


async def _ingest(peer: Peer, sc: Scenario, redis_pid: int | None) -> dict[str, Any]:
    if sc.batch > 1 and not peer.batch_ok:
        return {"unavailable": "no batch publish in this peer"}
    sent = Sent()
    start = tree_usage(peer.pid)
    redis0, lg0 = tree_usage(redis_pid).cpu_seconds, _cpu_self()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await publish_closed_loop(
        HOST,
        peer.port,
        peer.publish_path,
        peer.body_for,
        sc.batch,
        sc.duration,
        sent,
        sc.connections,
        headers=peer.write_headers,
    )
    elapsed = loop.time() - t0
    cpu = tree_usage(peer.pid).cpu_seconds - start.cpu_seconds
    redis_cpu = tree_usage(redis_pid).cpu_seconds - redis0
    return {
        "posts": sent.ok,
        "post_failed": sent.failed,
        "posts_per_s": round(sent.ok / elapsed, 1),
        "readings_per_s": round(sent.readings / elapsed, 1),
        "post_p50_ms": _ms(_pct(sent.post_latency, 0.5)),
        "post_p99_ms": _ms(_pct(sent.post_latency, 0.99)),
        "server_cpu_pct": round(100 * cpu / elapsed, 1),
        "us_cpu_per_reading": round(1e6 * cpu / sent.readings, 2) if sent.readings else None,
        "redis_us_per_reading": round(1e6 * redis_cpu / sent.readings, 2) if sent.readings and redis_pid else None,
        "loadgen_cpu_pct": round(100 * (_cpu_self() - lg0) / elapsed, 1),
    }

"""What stopped the server during a scenario: GC pauses and event-loop lag, from its own /metrics.

livedash peers only (the others report ``None``): ``/metrics`` is scraped
before the load and after the drain, and the difference of
``livedash_gc_pause_seconds`` and ``livedash_event_loop_lag_seconds`` says
how many collections of each generation ran, how long they took in all and
how long the longest could have been (the upper bound of the highest bucket
that grew: histograms keep no maximum). Pauses and stalls of
``LIVEDASH_STALL_LOG`` (0.1 s) or more are also logged by the server with
their exact length; those lines, from the part of the peer's log written in
between, give the exact figures when there are any.
"""

from __future__ import annotations

import asyncio
import math
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .peers import Peer

GC = "livedash_gc_pause_seconds"
LAG = "livedash_event_loop_lag_seconds"
_LOGGED = re.compile(rb"(gc pause|event loop stalled)\b.*?\bms=([0-9.]+)")


@dataclass
class Hist:
    count: float = 0.0
    total: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative count

    def minus(self, other: Hist) -> Hist:
        return Hist(
            self.count - other.count,
            self.total - other.total,
            {le: n - other.buckets.get(le, 0.0) for le, n in self.buckets.items()},
        )

    def longest(self) -> float | None:
        """Upper bound (seconds) of the bucket holding the longest observation; None if there was none."""
        if self.count <= 0:
            return None
        return min(le for le, n in self.buckets.items() if n >= self.count)


@dataclass
class Snapshot:
    gc: dict[str, Hist]  # by generation
    lag: Hist
    log_offset: int


def _parse(text: str, log_offset: int) -> Snapshot:
    gc: dict[str, Hist] = {}
    lag = Hist()
    for family in text_string_to_metric_families(text):
        if family.name not in (GC, LAG):
            continue
        for s in family.samples:
            hist = lag if family.name == LAG else gc.setdefault(s.labels.get("generation", "?"), Hist())
            if s.name.endswith("_count"):
                hist.count = s.value
            elif s.name.endswith("_sum"):
                hist.total = s.value
            elif s.name.endswith("_bucket"):
                hist.buckets[float(s.labels["le"])] = s.value
    return Snapshot(gc, lag, log_offset)


def _get(url: str, headers: dict[str, str]) -> str:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


async def snapshot(peer: Peer) -> Snapshot | None:
    if peer.metrics_headers is None:
        return None
    try:
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{peer.port}/metrics", peer.metrics_headers)
    except OSError:
        return None
    offset = peer.log_path.stat().st_size if peer.log_path and peer.log_path.exists() else 0
    return _parse(text, offset)


def _logged(path: Path | None, start: int, end: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"gc pause": [], "event loop stalled": []}
    if path is None or not path.exists():
        return found
    with open(path, "rb") as log:
        log.seek(start)
        for match in _LOGGED.finditer(log.read(max(0, end - start))):
            found[match.group(1).decode()].append(float(match.group(2)))
    return found


def _ms(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    return math.inf if math.isinf(seconds) else round(seconds * 1000, 1)


def figures(peer: Peer, before: Snapshot | None, after: Snapshot | None) -> dict[str, Any]:
    """The scenario's GC and loop-lag figures (all None for a peer without them)."""
    if before is None or after is None:
        return dict.fromkeys(KEYS)
    gc = {gen: hist.minus(before.gc.get(gen, Hist())) for gen, hist in after.gc.items()}
    lag = after.lag.minus(before.lag)
    longest = [x for x in (h.longest() for h in gc.values()) if x is not None]
    logged = _logged(peer.log_path, before.log_offset, after.log_offset)
    gc_max, gc_le = max(logged["gc pause"], default=None), _ms(max(longest, default=None))
    lag_max, lag_le = max(logged["event loop stalled"], default=None), _ms(lag.longest())
    return {
        "gc2_count": int(gc["2"].count) if "2" in gc else 0,
        "gc_count": int(sum(h.count for h in gc.values())),
        "gc_pause_s": round(sum(h.total for h in gc.values()), 3),
        # Exact when a pause was long enough to be logged, else the histogram's bound.
        "gc_pause_max_ms": max(logged["gc pause"], default=None),
        "gc_pause_max_le_ms": _ms(max(longest, default=None)),
        "gc2_pause_max_le_ms": _ms(gc["2"].longest()) if "2" in gc else None,
        "loop_lag_max_ms": max(logged["event loop stalled"], default=None),
        "loop_lag_max_le_ms": _ms(lag.longest()),
        "loop_lag_over_100ms": int(lag.count - lag.buckets.get(0.1, lag.count)) if lag.count else 0,
        # For the table: the exact figure, or "≤" the histogram's bound.
        "gc_max": _shown(gc_max, gc_le),
        "lag_max": _shown(lag_max, lag_le),
    }


def _shown(exact: float | None, bound: float | None) -> str | None:
    if exact is not None:
        return f"{exact:g}"
    return None if bound is None else f"≤{bound:g}"


KEYS = (
    "gc2_count",
    "gc_count",
    "gc_pause_s",
    "gc_pause_max_ms",
    "gc_pause_max_le_ms",
    "gc2_pause_max_le_ms",
    "loop_lag_max_ms",
    "loop_lag_max_le_ms",
    "loop_lag_over_100ms",
    "gc_max",
    "lag_max",
)

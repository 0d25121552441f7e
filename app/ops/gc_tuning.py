"""The cyclic garbage collector, set for a server that holds thousands of streams.

A full (generation 2) collection walks every container object the process
holds, and CPython starts one whenever the objects promoted since the last
one exceed a quarter of the long-lived ones. Each open stream holds ~150
such objects (mostly hypercorn's and Quart's: tasks, coroutines, contexts,
futures, h11 state), so with 5,000 streams a full collection walked ~800,000
objects and stopped the event loop for ~450 ms, several times while streams
were opening; and a process with no stream open still spent ~7 % of its CPU
in 26 ms full collections of its ~90,000 start-up objects (modules, pydantic
schemas, templates) during heavy ingest.

So, once the app has started:

* the start-up objects are frozen (``gc.freeze``): they live as long as the
  process, and no collection walks them again;
* the youngest generation is collected after 7,000 new objects instead of
  700: a request's objects are nearly all freed by reference counting, so
  those collections mostly found nothing, and full collections come ten
  times less often for the same allocation rate.

Measured with ``bench.run`` (one worker): batched ingest after the
5,000-stream scenario went from a 550-700 ms stall (p99) to p99 64 ms,
10,000 idle streams from 17 to 15 KiB each. What is not cured: a stream
that closes leaves a reference cycle behind (its cancellation's traceback,
inside hypercorn and Quart), so a mass disconnect of thousands of streams
still costs one long collection later.

``LIVEDASH_GC_THRESHOLD`` sets the three thresholds (CPython's default is
``[700,10,10]``); ``LIVEDASH_GC_FREEZE=0`` leaves start-up objects in.

Every collection is timed (a ``gc.callbacks`` hook, installed once per
process) into ``livedash_gc_pause_seconds{generation}``, and one that took
``LIVEDASH_STALL_LOG`` seconds or more (default 0.1) is logged as a WARNING
``gc pause`` with its generation, milliseconds and objects collected. The
hook itself only appends to a bounded buffer: it runs inside whatever code
allocated, which may hold prometheus-client's (non-reentrant) lock or a
logging handler's, so the figures reach the histogram and the log on the
event loop, before each metrics sample (every second and on every scrape).
With them, issue 20's p99 spikes at 1,000 streams x 10/s turned out not to
be the collector: no collection of any generation ran during those loads
(docs/scaling.md, "Latency spikes").
"""

from __future__ import annotations

import gc
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from app.ops import telemetry
from app.ops.logs import event

log = logging.getLogger(__name__)

# Collections kept until the next flush (once a second): far more than a second's worth.
PENDING_MAX = 10_000


@dataclass
class PauseWatch:
    """Times every collection (``gc.callbacks``); ``flush`` hands them to the histogram and the log."""

    log_at: float = 0.1
    pending: deque[tuple[int, float, int]] = field(default_factory=lambda: deque(maxlen=PENDING_MAX))
    _started: float = 0.0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector, in whatever code allocated: no locks, no logging, no metrics here.
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self.pending.append((int(info["generation"]), time.perf_counter() - self._started, int(info["collected"])))
            self._started = 0.0

    def flush(self) -> None:
        while self.pending:
            generation, seconds, collected = self.pending.popleft()
            telemetry.GC_PAUSE.labels(generation=str(generation)).observe(seconds)
            if seconds >= self.log_at:
                event(
                    log,
                    logging.WARNING,
                    "gc pause",
                    generation=generation,
                    ms=round(seconds * 1000, 1),
                    collected=collected,
                )


WATCH = PauseWatch()


def watch_pauses(log_at: float) -> PauseWatch:
    """Time every collection from now on (idempotent: one hook per process, whatever the number of apps)."""
    WATCH.log_at = log_at
    if WATCH.callback not in gc.callbacks:
        gc.callbacks.append(WATCH.callback)
    telemetry.before_sample(WATCH.flush)
    return WATCH


def tune(threshold: tuple[int, int, int], freeze: bool, log_pause: float = 0.1) -> None:
    watch_pauses(log_pause)
    gc.set_threshold(*threshold)
    if freeze:
        # Collect first, so start-up garbage is freed rather than frozen.
        gc.collect()
        gc.freeze()
    event(log, logging.INFO, "gc tuned", threshold=list(gc.get_threshold()), frozen=gc.get_freeze_count())

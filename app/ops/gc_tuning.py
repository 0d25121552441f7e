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
"""

from __future__ import annotations

import gc
import logging

from app.ops.logs import event

log = logging.getLogger(__name__)


def tune(threshold: tuple[int, int, int], freeze: bool) -> None:
    gc.set_threshold(*threshold)
    if freeze:
        # Collect first, so start-up garbage is freed rather than frozen.
        gc.collect()
        gc.freeze()
    event(log, logging.INFO, "gc tuned", threshold=list(gc.get_threshold()), frozen=gc.get_freeze_count())

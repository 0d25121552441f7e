"""The event loop's lag: how long it could not run anything, whatever blocked it.

A task sleeps ``LIVEDASH_LOOP_LAG_INTERVAL`` (50 ms) at a time and records
how late it woke into ``livedash_event_loop_lag_seconds``: a garbage
collection, a long synchronous stretch (a big batch dispatched in one go, a
burst of writes) or CPU starvation all show up there, whoever caused them.
A lag of ``LIVEDASH_STALL_LOG`` (0.1 s) or more is logged as a WARNING
``event loop stalled``. A stall is under-counted by up to one interval (it
may begin anywhere in the tick's sleep). The wake-ups are what it costs: on
an idle worker of the 2-core bench VM, 0.5 % of a core at 50 ms and 1 % at
20 ms (idle, the worker alone used 0.5 %); a busy loop is awake anyway.
"""

from __future__ import annotations

import asyncio
import logging

from app.ops import telemetry
from app.ops.logs import event

log = logging.getLogger(__name__)


async def run_probe(interval: float, log_at: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - due)
        telemetry.LOOP_LAG.observe(lag)
        if lag >= log_at:
            event(log, logging.WARNING, "event loop stalled", ms=round(lag * 1000, 1))

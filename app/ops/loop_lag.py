"""The event loop's lag: how long it could not run anything, whatever blocked it.

A task sleeps ``LIVEDASH_LOOP_LAG_INTERVAL`` (20 ms) at a time and records
how late it woke into ``livedash_event_loop_lag_seconds``: a garbage
collection, a long synchronous stretch (a big batch dispatched in one go, a
burst of writes) or CPU starvation all show up there, whoever caused them.
A lag of ``LIVEDASH_STALL_LOG`` (0.1 s) or more is logged as a WARNING
``event loop stalled``. A stall shorter than the interval may be missed or
under-counted by up to one interval; 50 wake-ups a second cost well under
0.1 % of a core.
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

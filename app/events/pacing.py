"""A per-stream update-rate cap, served by a few shared timers.

The interval between two writes of a stream is the larger of ``1/max_rate``
(the UI never needs more, ~30 updates/s) and ``streams / write_budget``: the
process as a whole aims at no more than ``write_budget`` socket writes per
second, so with few streams updates are as prompt as the cap allows and with
many each write carries more events instead of the loop falling behind.

A stream that was written less than ``interval`` ago is not woken for the next
event at once: it is put in a bucket of a coarse timer grid (``interval /
SLOTS_PER_INTERVAL`` wide) and woken when that bucket's timer fires, by
which time every event that came meanwhile is queued and goes out in the same
write. On loopback half of a stream's CPU is the ``send()`` itself, so fewer,
fuller writes are what makes fan-out cheap; a thousand streams share a few
timers instead of arming one each. A stream that has been quiet for an
interval is woken at once, so a lone event is never delayed.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

SLOTS_PER_INTERVAL = 4


class Wakeable(Protocol):
    due: float
    closed: bool

    def wake(self) -> None: ...


# Timer grid when only the write budget paces (no per-stream cap), seconds.
DEFAULT_SLOT = 0.005


class Pacer:
    def __init__(self, max_rate: float, write_budget: float) -> None:
        self.floor = 1.0 / max_rate if max_rate > 0 else 0.0
        self.write_budget = write_budget
        self.slot = self.floor / SLOTS_PER_INTERVAL if self.floor else DEFAULT_SLOT
        self.interval = self.floor
        self._buckets: dict[int, list[Wakeable]] = {}

    def resize(self, streams: int) -> None:
        """The broker tells us how many streams are open; the interval follows."""
        spread = streams / self.write_budget if self.write_budget > 0 else 0.0
        self.interval = max(self.floor, spread)

    def admit(self, sub: Wakeable, now: float) -> bool:
        """True: wake ``sub`` now. False: it is due later and a timer will wake it."""
        if now >= sub.due:
            return True
        slot = math.ceil(sub.due / self.slot)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = []
            asyncio.get_running_loop().call_at(slot * self.slot, self._fire, slot)
        bucket.append(sub)
        return False

    def _fire(self, slot: int) -> None:
        for sub in self._buckets.pop(slot, ()):
            if not sub.closed:
                sub.wake()

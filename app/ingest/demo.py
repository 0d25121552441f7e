"""The built-in sensor simulator (``LIVEDASH_DEMO=1``).

Every process runs the loop, but only the holder of a Redis lease posts, so
two workers (or two machines) do not double the demo data. Readings go
through the same validation and ingest path as ``POST /api/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from app.ingest.pipeline import ingest
from app.ingest.readings import Reading
from app.services import Services
from app.storage import lua as scripts
from app.validation import now_ms

log = logging.getLogger(__name__)


@dataclass
class Signal:
    """A noisy signal around a base value, with a slow wave and rare spikes."""

    device: str
    metric: str
    unit: str
    base: float
    noise: float
    wave: float
    spike_chance: float = 0.0
    spike_size: float = 0.0
    value: float = field(init=False)

    def __post_init__(self) -> None:
        self.value = self.base

    def step(self, t: float, rng: random.Random) -> float:
        target = self.base + self.wave * math.sin(t / 40.0 + hash(self.metric) % 7)
        self.value += (target - self.value) * 0.2 + rng.gauss(0, self.noise)
        if self.spike_chance and rng.random() < self.spike_chance:
            return round(self.value + self.spike_size * (0.6 + rng.random()), 3)
        return round(self.value, 3)


def default_signals() -> list[Signal]:
    signals = []
    for device, offset in (("pump-1", 0.0), ("pump-2", 3.0), ("fan-3", -4.0)):
        signals += [
            Signal(device, "temperature", "°C", 46.0 + offset, 0.15, 2.5),
            Signal(device, "rpm", "rpm", 1480.0 + offset * 20, 4.0, 25.0),
            Signal(device, "vibration", "mm/s", 2.2, 0.05, 0.3, spike_chance=0.03, spike_size=6.0),
        ]
    return signals


async def run_simulator(eng: Services, interval: float, rng: random.Random | None = None) -> None:
    """Post one reading per signal every ``interval`` seconds while we hold the lease."""
    rng = rng or random.Random()
    lease = scripts.load(eng.redis, "lease")
    owner = uuid.uuid4().hex
    ttl_ms = int(max(interval * 3, 2) * 1000)
    signals = default_signals()
    t = 0.0
    while True:
        try:
            if await lease(keys=[eng.keys.demo_lease], args=[owner, ttl_ms]):
                ts = now_ms()
                readings = [
                    Reading(device=s.device, metric=s.metric, value=s.step(t, rng), unit=s.unit, ts=ts) for s in signals
                ]
                await ingest(eng, readings, source="demo")
                t += interval
        except RedisError as exc:
            log.warning("demo simulator: Redis unavailable (%s); retrying", exc)
        await asyncio.sleep(interval)

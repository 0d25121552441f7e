"""The one write path for readings, shared by HTTP ingest and the simulator.

Validation happens before this (``readings.parse_readings``); here the batch
is stored atomically and whatever reacts to new readings runs.
"""

from __future__ import annotations

from .engine import Engine
from .readings import Reading


async def ingest(eng: Engine, readings: list[Reading]) -> list[str]:
    """Store a validated batch; returns the ids of the ``metric`` events."""
    ids = await eng.series.ingest(readings)
    # After the readings are stored, so an `alert` event never precedes the
    # `metric` event that caused it.
    await eng.alerts.evaluate(readings)
    return ids

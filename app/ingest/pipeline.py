"""The one write path for readings: HTTP JSON, line protocol, MQTT, the simulator.

Validation happens before this (``readings.parse_readings``,
``lineprotocol.parse``, ``mqtt_bridge.to_reading``); here the batch is stored
atomically and whatever reacts to new readings runs. ``source`` only labels
the ``livedash_readings_accepted_total`` metric.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from app.ingest.readings import Reading
from app.ops import telemetry
from app.services import Services

if TYPE_CHECKING:
    from app.series import Ingested


async def ingest(eng: Services, readings: list[Reading], source: str = "http") -> Ingested:
    """Store a validated batch; returns the ids of the ``metric`` events (``too_old``: how many no tier kept)."""
    start = time.perf_counter()
    # Stores the readings and evaluates their alert rules in one script run.
    ids = await eng.series.ingest(readings)
    telemetry.INGEST_SECONDS.observe(time.perf_counter() - start)
    telemetry.READINGS_ACCEPTED.labels(source).inc(len(readings))
    return ids

"""The no-data sweeper: every process runs it, ``alert_sweep.lua`` decides.

Each reading of a series watched by a no-data rule pushes the rule's deadline
(arrival + ``no_data_seconds``, Redis time) into a sorted set, inside the
ingest script. This loop asks Redis every ``LIVEDASH_ALERT_SWEEP_INTERVAL``
(50-100 % of it, so processes drift apart) to fire what is due; the check
and the transition are one script run, so however many processes sweep,
each firing happens once. A no-data alert therefore fires between N and
N + one interval seconds after the last reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.storage import lua as scripts
from app.storage.keyspace import Keys

log = logging.getLogger(__name__)

SWEEP_BATCH = 200


class NoDataSweeper:
    def __init__(self, redis: Redis, keys: Keys, log_maxlen: int) -> None:
        self.keys = keys
        self.log_maxlen = log_maxlen
        self._sweep = scripts.load(redis, "alert_eval", "alert_sweep")

    async def sweep_once(self) -> int:
        """Fire what is due; how many transitions this run made."""
        k = self.keys
        ids = await self._sweep(keys=[k.alert_rules, k.alert_state, k.events], args=[self.log_maxlen, SWEEP_BATCH])
        return len(ids)


async def run_nodata_sweeper(sweeper: NoDataSweeper, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await sweeper.sweep_once()
        except RedisError as exc:
            log.warning("no-data sweeper: Redis unavailable (%s); retrying", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval * random.uniform(0.5, 1.0))

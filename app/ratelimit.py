"""Per-token write rate limit, counted in Redis so it holds across processes.

A fixed window per token (``scripts/write_rate.lua``): simple, one round
trip, and exact across any number of workers. A client over the limit gets
429 with ``Retry-After`` (the seconds until its window ends) before its
request is looked at, so nothing of a refused write is stored.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis

from . import scripts
from .errors import TooManyRequests
from .keys import Keys


class WriteRateLimit:
    def __init__(self, redis: Redis, keys: Keys, limit: int, window: float) -> None:
        self.redis = redis
        self.keys = keys
        self.limit = limit
        self.window_ms = max(1, int(window * 1000))
        self.script = scripts.load(redis, "write_rate")

    async def hit(self, token_id: str) -> None:
        """Count one write; raise TooManyRequests past the limit."""
        count, left_ms = await self.script(keys=[self.keys.write_rate(token_id)], args=[self.window_ms])
        if int(count) > self.limit:
            retry = max(1, math.ceil(int(left_ms) / 1000))
            raise TooManyRequests(
                f"at most {self.limit} writes per {self.window_ms / 1000:g} s for one token; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )

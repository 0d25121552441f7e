"""Per-token write rate limit, counted in Redis so it holds across processes.

A fixed window per token, keyed by the token's hash (``app/storage/lua/write_rate.lua``):
simple, one round trip (shared with the token lookup on the ingest path), and
exact across any number of workers. A client over the limit gets
429 with ``Retry-After`` (the seconds until its window ends) before its
request is looked at, so nothing of a refused write is stored.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis

from app.errors import TooManyRequests
from app.storage import lua as scripts
from app.storage.keyspace import Keys

# What write_rate.lua returns: the window's count so far, and ms left in it.
Counted = tuple[int, int]


class WriteRateLimit:
    def __init__(self, redis: Redis, keys: Keys, limit: int, window: float) -> None:
        self.redis = redis
        self.keys = keys
        self.limit = limit
        self.window_ms = max(1, int(window * 1000))
        self.script = scripts.load(redis, "write_rate")
        self.lookup_script = scripts.load(redis, "token_write")

    async def hit(self, token_hash: str) -> None:
        """Count one write; raise TooManyRequests past the limit."""
        self.check(await self.count(token_hash))

    async def count(self, token_hash: str) -> Counted:
        count, left_ms = await self.script(keys=[self.keys.write_rate(token_hash)], args=[self.window_ms])
        return int(count), int(left_ms)

    async def lookup_and_count(self, key: str, token_hash: str) -> tuple[bytes | None, Counted]:
        """GET the token record at ``key`` and, only if there is one, count a write for it: one round trip.

        For the ingest path, where the lookup and the count would otherwise be
        two (``app/storage/lua/token_write.lua``). An unknown token is not
        counted and leaves no key behind; the caller decides, once it knows the
        token's role, whether to ``check`` the count.
        """
        raw, count, left_ms = await self.lookup_script(
            keys=[key, self.keys.write_rate(token_hash)], args=[self.window_ms]
        )
        return raw, (int(count), int(left_ms))

    def check(self, counted: Counted) -> None:
        """Raise TooManyRequests if this count is past the limit."""
        count, left_ms = counted
        if count > self.limit:
            retry = max(1, math.ceil(left_ms / 1000))
            raise TooManyRequests(
                f"at most {self.limit} writes per {self.window_ms / 1000:g} s for one token; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )

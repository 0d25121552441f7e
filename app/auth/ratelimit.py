"""Per-token write rate limit, counted in Redis so it holds across processes.

A fixed window per token, keyed by the token's hash (``scripts/write_rate.lua``):
simple, one round trip (shared with the token lookup on the ingest path), and
exact across any number of workers. A client over the limit gets
429 with ``Retry-After`` (the seconds until its window ends) before its
request is looked at, so nothing of a refused write is stored.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

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

    async def hit(self, token_hash: str) -> None:
        """Count one write; raise TooManyRequests past the limit."""
        self.check(await self.count(token_hash))

    async def count(self, token_hash: str) -> Counted:
        count, left_ms = await self.script(keys=[self.keys.write_rate(token_hash)], args=[self.window_ms])
        return int(count), int(left_ms)

    async def get_and_count(self, key: str, token_hash: str) -> tuple[bytes | None, Counted]:
        """GET ``key`` and count one write for ``token_hash``, in one round trip.

        For the ingest path, where the token lookup and the count would
        otherwise be two. The caller decides, once it knows the token is good,
        whether to ``check`` the count (an unknown token's count expires
        unused).
        """
        counter = self.keys.write_rate(token_hash)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.evalsha(self.script.sha, 1, counter, self.window_ms)
            raw, counted = await pipe.execute(raise_on_error=False)
        if isinstance(raw, Exception):
            raise raw
        if isinstance(counted, NoScriptError):  # Redis restarted: the client loads the script again
            counted = await self.script(keys=[counter], args=[self.window_ms])
        elif isinstance(counted, Exception):
            raise counted
        count, left_ms = counted
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

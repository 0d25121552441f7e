"""Reads that concurrent requests share, so a burst costs a few round trips instead of one each.

After a deploy every page reconnects within a second or two, and each stream
open looks up its credential and the log's state. Done one by one that is
thousands of round trips queueing for the pool at once; shared, it is a few.

Both helpers only ever hand a caller the result of a read that *started after
the caller asked*: a revoked token, or an event written just before a client
reconnected, is seen exactly as an unshared read would see it.

* ``SharedRead``: one value (the log's head and epoch); callers that arrive
  while a read is under way wait for the next one, which serves all of them.
* ``BatchedGet``: values by key (token records): the keys asked for within
  one turn of the event loop go out as one ``MGET``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from redis.asyncio import Redis

T = TypeVar("T")


def _retrieve(task: asyncio.Future[T]) -> None:
    # Every caller may have gone (cancelled) before the read ended: its error must not be logged as lost.
    if not task.cancelled():
        task.exception()


class SharedRead(Generic[T]):
    """``await get()``: the result of a ``read()`` begun after this call, shared with every concurrent caller."""

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._running: asyncio.Task[T] | None = None
        self._next: asyncio.Task[T] | None = None

    async def get(self) -> T:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_task(self._start(self._running))
            self._next.add_done_callback(_retrieve)
        # shield: one caller giving up must not cancel the read the others wait for.
        return await asyncio.shield(self._next)

    async def _start(self, before: asyncio.Task[T] | None) -> T:
        if before is not None:
            # A read under way may have begun before some of our callers asked: wait, then read afresh.
            await asyncio.wait([before])
        self._running, self._next = self._next, None
        return await self._read()


class BatchedGet:
    """``await get(key)``: the key's value, read in one MGET with every other key asked for in the same turn."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._waiting: dict[str, asyncio.Future[bytes | str | None]] = {}

    async def get(self, key: str) -> bytes | str | None:
        found = self._waiting.get(key)
        if found is None:
            if not self._waiting:
                asyncio.get_running_loop().call_soon(self._flush)
            found = self._waiting[key] = asyncio.get_running_loop().create_future()
            found.add_done_callback(_retrieve)
        return await asyncio.shield(found)

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, {}
        task = asyncio.get_running_loop().create_task(self._fetch(batch))
        task.add_done_callback(_retrieve)

    async def _fetch(self, batch: dict[str, asyncio.Future[bytes | str | None]]) -> None:
        try:
            values = await self.redis.mget(list(batch))
        except asyncio.CancelledError:
            for future in batch.values():
                future.cancel()
            raise
        except Exception as exc:  # each caller gets the error its own read would have raised
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        for future, value in zip(batch.values(), values, strict=True):
            if not future.done():
                future.set_result(value)

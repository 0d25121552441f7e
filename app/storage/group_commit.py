"""Group commit: concurrent writers share one Redis round trip.

While one call to the store is in flight, the batches that arrive are queued;
when it returns, everything queued goes out together in the next call. Each
caller's batch stays whole and contiguous inside one call (so a batch is
still stored atomically and its events stay in order), and each caller gets
back exactly its own results. An idle store sends at once: nothing waits for
a timer. Under load, one script run carries many POSTs, which is what lifts
single-reading ingest: the per-call cost (the client, the round trip, the
script start) is paid once per group, not once per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(self, write: Callable[[list[T]], Awaitable[list[R]]], max_items: int) -> None:
        self._write = write
        self.max_items = max_items
        self._queue: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, items: list[T]) -> list[R]:
        """Write ``items`` (in one call, with whoever else is waiting); their results, in order."""
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.append((items, future))
        if self._flusher is None:
            # A task of its own, so a caller that goes away cannot strand the others.
            self._flusher = asyncio.create_task(self._flush())
        return await asyncio.shield(future)

    def _take(self) -> list[tuple[list[T], asyncio.Future[list[R]]]]:
        group: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        count = 0
        while self._queue and (not group or count + len(self._queue[0][0]) <= self.max_items):
            entry = self._queue.pop(0)
            group.append(entry)
            count += len(entry[0])
        return group

    async def _flush(self) -> None:
        try:
            while self._queue:
                group = self._take()
                try:
                    results = await self._write([item for items, _ in group for item in items])
                except BaseException as exc:
                    # Every caller in the group hears of it (a cancellation at shutdown included).
                    failure = exc if isinstance(exc, Exception) else asyncio.CancelledError()
                    for _, future in group:
                        if not future.done():
                            future.set_exception(failure)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                start = 0
                for items, future in group:
                    if not future.done():
                        future.set_result(results[start : start + len(items)])
                    start += len(items)
        finally:
            self._flusher = None

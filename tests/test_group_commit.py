"""Group commit: concurrent batches share one write, each stays whole and gets its own results."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.storage.group_commit import GroupCommit

from .waiting import async_wait_until


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[list[int]] = []
        self.fail_on = fail_on
        self.gate = asyncio.Event()

    async def write(self, items: list[int]) -> list[str]:
        self.calls.append(list(items))
        await self.gate.wait()
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError("storage failed")
        return [f"id-{i}" for i in items]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run (bounded) until ``condition`` holds; no count of scheduler steps assumed."""

    async def check() -> bool:
        return condition()

    await async_wait_until(check, timeout=5, interval=0.001, what=what)


def queued(group: GroupCommit[int, str]) -> int:
    """Batches waiting behind the write in flight."""
    return len(group._queue)


async def test_concurrent_batches_share_a_write_and_get_their_own_ids() -> None:
    rec = Recorder()
    group = GroupCommit(rec.write, max_items=100)
    first = asyncio.create_task(group.submit([1]))
    await until(lambda: rec.calls == [[1]], "the first write to be in flight")
    rest = [asyncio.create_task(group.submit([10 * k, 10 * k + 1])) for k in range(1, 4)]
    await until(lambda: queued(group) == 3, "three batches queued behind it")
    rec.gate.set()
    assert await first == ["id-1"]
    assert [await t for t in rest] == [["id-10", "id-11"], ["id-20", "id-21"], ["id-30", "id-31"]]
    assert rec.calls == [[1], [10, 11, 20, 21, 30, 31]]


async def test_a_batch_is_never_split_across_writes() -> None:
    rec = Recorder()
    rec.gate.set()
    group = GroupCommit(rec.write, max_items=4)
    results = await asyncio.gather(*(group.submit([k] * 3) for k in range(1, 4)))
    assert results == [[f"id-{k}"] * 3 for k in range(1, 4)]
    assert all(len(call) == 3 for call in rec.calls), rec.calls


async def test_a_failed_write_fails_every_caller_in_it_and_only_them() -> None:
    rec = Recorder(fail_on=2)
    group = GroupCommit(rec.write, max_items=100)
    first = asyncio.create_task(group.submit([1]))
    await until(lambda: rec.calls == [[1]], "the first write to be in flight")
    second = asyncio.create_task(group.submit([2]))
    third = asyncio.create_task(group.submit([3]))
    await until(lambda: queued(group) == 2, "two batches queued behind it")
    rec.gate.set()
    assert await first == ["id-1"]
    with pytest.raises(RuntimeError):
        await second
    with pytest.raises(RuntimeError):
        await third

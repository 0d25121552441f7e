"""A stall is visible: every garbage collection is timed, and so is the event loop's lag.

``livedash_gc_pause_seconds{generation}`` counts and times every collection,
``livedash_event_loop_lag_seconds`` how late a periodic tick ran; either one
past ``LIVEDASH_STALL_LOG`` is also a WARNING line (issue 20: "find the stall").
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart

from app import create_app
from app.ops import gc_tuning
from app.settings import Settings

from .types import QuartClient
from .waiting import async_wait_until


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def scrape(client: QuartClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return await response.get_data(as_text=True)


@pytest.fixture
async def stall_client(make_settings: Callable[..., Settings]) -> AsyncIterator[QuartClient]:
    # Log every pause and stall, however short, so the test need not cause a long one.
    application: Quart = create_app(make_settings(stall_log=1e-9, loop_lag_interval=0.01))
    async with application.test_app():
        yield application.test_client()


async def test_a_full_collection_is_counted_timed_and_logged(
    stall_client: QuartClient, caplog: pytest.LogCaptureFixture
) -> None:
    before = await scrape(stall_client)
    count = sample(before, "livedash_gc_pause_seconds_count", generation="2")
    total = sample(before, "livedash_gc_pause_seconds_sum", generation="2")
    with caplog.at_level(logging.WARNING, logger="app.ops.gc_tuning"):
        gc.collect(2)
        gc.collect(2)
        after = await scrape(stall_client)
    assert sample(after, "livedash_gc_pause_seconds_count", generation="2") >= count + 2
    assert sample(after, "livedash_gc_pause_seconds_sum", generation="2") > total
    pauses = [r for r in caplog.records if r.getMessage() == "gc pause"]
    assert len(pauses) >= 2 and all(r.levelno == logging.WARNING for r in pauses)
    fields = pauses[-1].fields  # type: ignore[attr-defined]
    assert fields["generation"] == 2 and fields["ms"] >= 0 and isinstance(fields["collected"], int)


async def test_a_blocked_loop_shows_as_lag(stall_client: QuartClient, caplog: pytest.LogCaptureFixture) -> None:
    def over(threshold: float, text: str) -> float:
        # Observations above `threshold`: the count minus the bucket at `threshold`.
        return sample(text, "livedash_event_loop_lag_seconds_count") - sample(
            text, "livedash_event_loop_lag_seconds_bucket", le=str(threshold)
        )

    slow_before = over(0.1, await scrape(stall_client))
    with caplog.at_level(logging.WARNING, logger="app.ops.loop_lag"):
        # The stall under test, not a wait: a blocking call holds the loop as a handler's would.
        time.sleep(0.25)

        async def seen() -> bool:
            return over(0.1, await scrape(stall_client)) > slow_before

        await async_wait_until(seen, timeout=5, what="a lag over 100 ms in the histogram")
    stalls = [r for r in caplog.records if r.getMessage() == "event loop stalled"]
    assert any(r.fields["ms"] >= 100 for r in stalls)  # type: ignore[attr-defined]


def test_the_pause_hook_is_installed_once_per_process() -> None:
    # Every app started in a process calls tune(); one hook must time each collection once.
    first = gc_tuning.watch_pauses(0.1)
    again = gc_tuning.watch_pauses(0.2)
    assert first is again and again.log_at == 0.2
    assert gc.callbacks.count(again.callback) == 1

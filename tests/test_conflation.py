"""Pacing and conflation in the broker: a slow stream gets the newest value of every
series and a ``skip`` marker; a fast one gets everything, in order; a stuck one is dropped.

These drive ``Broker.dispatch`` directly with hand-made events (no Redis, no
sockets), so what they check is the queueing logic itself, never timing.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import pytest

from app.events.conflation import Skip, conflate
from app.events.event import Event
from app.events.hub import Hub, QueueItem, Subscription
from app.events.pacing import Pacer
from app.events.topics import TopicFilter

EVERYTHING = TopicFilter.parse(None)


def metric(seq: int, device: str, name: str, value: float, latest: bool = True) -> Event:
    data = {"device": device, "metric": name, "value": value, "ts": seq, "latest": latest}
    return Event(f"1700000000000-{seq}", "metric", f"device/{device}", orjson.dumps(data))


def annotation(seq: int, device: str) -> Event:
    return Event(f"1700000000000-{seq}", "annotation", f"device/{device}", b'{"text":"bearing replaced"}')


def make_hub(queue_size: int, max_rate: float = 0.0) -> Hub:
    return Hub(queue_size=queue_size, stream_max_rate=max_rate)


def events_of(items: list[QueueItem]) -> list[Event]:
    return [item for item in items if isinstance(item, Event)]


def skip_markers(items: list[QueueItem]) -> list[dict[str, Any]]:
    """The ``skip`` events, parsed from the bytes the stream would write for them."""
    out = []
    for item in items:
        if isinstance(item, Skip):
            wire = item.frame()
            assert wire.startswith(b"event: skip\n") and b"\nid:" not in wire
            out.append(orjson.loads(wire.split(b"data: ", 1)[1].split(b"\n", 1)[0]))
    return out


def values(events: list[Event]) -> list[tuple[str, str, float]]:
    out = []
    for ev in events:
        data = ev.data()
        assert isinstance(data, dict)
        out.append((data["device"], data["metric"], data["value"]))
    return out


async def test_fast_stream_gets_everything_in_order() -> None:
    b = make_hub(queue_size=8)
    sub = b.subscribe(EVERYTHING)
    received: list[QueueItem] = []
    sent = [metric(i, f"d{i % 3}", "temp", float(i)) for i in range(1, 101)]
    for ev in sent:
        b.dispatch(ev)
        await sub.wait()
        received += sub.drain()
    assert [e.id for e in events_of(received)] == [e.id for e in sent]
    assert skip_markers(received) == []
    assert b.conflated == 0 and b.dropped == 0


async def test_slow_stream_gets_newest_value_of_every_series_and_a_skip_marker() -> None:
    b = make_hub(queue_size=16)
    sub = b.subscribe(EVERYTHING, cancel_on_overflow=False)
    sub.conflate = True  # a stream, minus the task cancellation a real request would have
    series = [("pump-1", "temp"), ("pump-1", "rpm"), ("pump-2", "temp")]
    sent = [metric(i, *series[i % 3], value=float(i)) for i in range(1, 18)]  # one more than fits
    for ev in sent:
        b.dispatch(ev)
    items = sub.drain()
    markers = skip_markers(items)
    assert len(markers) == 1 and markers[0]["reason"] == "slow-consumer"
    assert isinstance(items[0], Skip), "the marker comes before the conflated values"
    got = events_of(items)
    # The newest of each series at the moment of overflow, then what came after it.
    newest_before = {}
    for ev in sent[:16]:
        newest_before[values([ev])[0][:2]] = ev
    expected = [*sorted(newest_before.values(), key=lambda e: e.key), sent[16]]
    assert [e.id for e in got] == [e.id for e in expected]
    assert markers[0]["skipped"] == 16 - len(newest_before)
    assert b.conflated == markers[0]["skipped"]
    # Ids still only go up, so Last-Event-ID resumes correctly after these.
    assert [e.key for e in got] == sorted(e.key for e in got)
    assert b.dropped == 0 and not sub.closed


async def test_markers_merge_across_conflations() -> None:
    first, skipped = conflate([metric(1, "d", "m", 1.0), metric(2, "d", "m", 2.0)])
    second, more = conflate([*first, metric(3, "d", "m", 3.0)])
    assert (skipped, more) == (1, 1)
    assert skip_markers(second) == [{"skipped": 2, "reason": "slow-consumer"}]
    assert [e.id for e in events_of(second)] == [metric(3, "d", "m", 3.0).id]


async def test_conflation_keeps_events_that_are_not_readings() -> None:
    items: list[Any] = [metric(1, "d", "m", 1.0), annotation(2, "d"), metric(3, "d", "m", 3.0), b": ping\n\n"]
    kept, skipped = conflate(items)
    assert skipped == 1
    assert kept[1:] == [items[1], items[2], items[3]]


async def test_a_late_older_reading_does_not_displace_the_latest() -> None:
    items: list[Any] = [metric(1, "d", "m", 1.0), metric(2, "d", "m", 2.0), metric(3, "d", "m", 0.5, latest=False)]
    kept, skipped = conflate(items)
    assert skipped == 2
    assert events_of(kept) == [items[1]]


async def test_stuck_stream_is_dropped_by_the_keepalive_sweep_and_a_slow_one_is_not() -> None:
    b = make_hub(queue_size=8)
    stuck = b.subscribe(EVERYTHING, cancel_on_overflow=False)
    slow = b.subscribe(EVERYTHING, cancel_on_overflow=False)
    stuck.conflate = slow.conflate = True
    for tick in range(3):
        for i in range(1, 20):  # more than fits: both get conflated, neither dropped for it
            b.dispatch(metric(tick * 100 + i, "d", f"m{i % 4}", float(i)))
        slow.drain()  # the slow one writes something every interval
        b.dispatch(metric(tick * 100 + 50, "d", "m0", 0.0))
        b.sweep_stuck()
    assert b.conflated > 0
    assert len(skip_markers(list(slow.queue))) <= 1, "markers merge instead of piling up"
    assert stuck.closed and stuck.reason == "slow-consumer" and b.dropped == 1
    assert not slow.closed


async def test_paced_stream_gets_a_burst_in_one_wake_and_in_order() -> None:
    b = make_hub(queue_size=1024, max_rate=1000.0)
    sub = b.subscribe(EVERYTHING)
    first = metric(1, "d", "m", 1.0)
    b.dispatch(first)
    await asyncio.wait_for(sub.wait(), 1.0)  # idle stream: woken at once
    assert events_of(sub.drain()) == [first]
    burst = [metric(i, "d", "m", float(i)) for i in range(2, 50)]
    for ev in burst:
        b.dispatch(ev)
    await asyncio.wait_for(sub.wait(), 1.0)  # held back by the cap, then woken by the pacer
    assert events_of(sub.drain()) == burst


@pytest.mark.parametrize("max_rate", [0.0, 50.0])
async def test_closing_wakes_a_waiting_stream_at_once(max_rate: float) -> None:
    b = make_hub(queue_size=8, max_rate=max_rate)
    sub: Subscription = b.subscribe(EVERYTHING)
    waiter = asyncio.create_task(sub.wait())
    await asyncio.sleep(0)
    b.end_streams()
    await asyncio.wait_for(waiter, 1.0)
    assert sub.closed and sub.reason == "shutdown"


def test_pacing_interval_is_the_cap_or_the_write_budget_spread_over_streams() -> None:
    pacer = Pacer(max_rate=30, write_budget=20_000)
    for streams, interval in [(0, 1 / 30), (100, 1 / 30), (1_000, 0.05), (5_000, 0.25)]:
        pacer.resize(streams)
        assert pacer.interval == pytest.approx(interval)
    budget_only = Pacer(max_rate=0, write_budget=10_000)
    budget_only.resize(10)
    assert budget_only.interval == pytest.approx(0.001)


async def test_the_subscriber_set_shrinks_after_a_peak() -> None:
    """A set keeps its table after removals, and dispatch walks the table: a
    server that once had thousands of streams would pay for them on every
    event forever. After the streams go, the set is rebuilt to its size."""
    b = make_hub(queue_size=8)
    # What 100 entries need; the table of 5,000 is ~250 times that.
    small_table = sys.getsizeof(set(range(100)))
    subs = [b.subscribe(EVERYTHING, cancel_on_overflow=False) for _ in range(5_000)]
    keep = subs[:3]
    for sub in subs[3:]:
        b.unsubscribe(sub)
    assert b.subscriptions == set(keep)
    assert sys.getsizeof(b.subscriptions) <= small_table
    b.dispatch(metric(1, "pump-1", "t", 1.0))
    assert [len(s.queue) for s in keep] == [1, 1, 1], "the streams still open get every event"
    # Dropped slow consumers count as leaving too.
    more = [b.subscribe(EVERYTHING, cancel_on_overflow=False) for _ in range(2_000)]
    for sub in more:
        b._drop(sub)
    assert sys.getsizeof(b.subscriptions) <= small_table

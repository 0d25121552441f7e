"""The hub without Redis: what the reader reports reaches every stream, once encoded."""

from __future__ import annotations

from app.events.event import Event
from app.events.hub import Hub, Reset, Subscription
from app.events.topics import TopicFilter


def event(seq: int, topic: str = "device/pump-1") -> Event:
    return Event(f"1700000000000-{seq}", "metric", topic, b'{"value":1}')


async def test_dispatch_by_topic_and_never_twice() -> None:
    hub = Hub(queue_size=16)
    pumps = hub.subscribe(TopicFilter.parse("device/pump-*"))
    fans = hub.subscribe(TopicFilter.parse("device/fan-*"))
    hub.dispatch(event(1))
    hub.dispatch(event(1))  # the same id again (a reader's retry): not delivered twice
    hub.dispatch(event(2, "device/fan-1"))
    assert [e.id for e in pumps.drain() if isinstance(e, Event)] == ["1700000000000-1"]
    assert [e.id for e in fans.drain() if isinstance(e, Event)] == ["1700000000000-2"]
    assert hub.delivered == 2


async def test_feed_lost_and_restored_tell_every_stream_once() -> None:
    hub = Hub(queue_size=16)
    sub = hub.subscribe(TopicFilter.parse("device/none"))
    hub.feed_restored(was_lost=False)
    assert hub.healthy.is_set() and not sub.queue
    hub.feed_lost()
    hub.feed_lost()  # already lost: no second frame
    hub.feed_restored(was_lost=True)
    frames = [item for item in sub.drain() if isinstance(item, bytes)]
    assert len(frames) == 2
    assert b'"state":"stale"' in frames[0] and b'"state":"live"' in frames[1]


async def test_restart_from_sends_one_shared_reset_and_moves_the_floor() -> None:
    hub = Hub(queue_size=16)
    a, b = hub.subscribe(TopicFilter.parse("*")), hub.subscribe(TopicFilter.parse("room/x"))
    hub.dispatch(event(5))
    hub.restart_from("1600000000000-0", "epoch-changed")
    resets = [item for item in a.drain() + b.drain() if isinstance(item, Reset)]
    assert len(resets) == 2 and resets[0] is resets[1]  # encoded once, shared
    assert b"epoch-changed" in resets[0].frame
    # Events of the new log, older than the old floor, are delivered again.
    hub.dispatch(Event("1600000000001-0", "metric", "device/p", b"{}"))
    assert [e.id for e in a.drain() if isinstance(e, Event)] == ["1600000000001-0"]


def pings(sub: Subscription) -> int:
    return sum(1 for item in sub.drain() if isinstance(item, bytes) and b"event: ping" in item)


async def test_keepalive_pings_a_slice_at_a_time_and_each_stream_once_an_interval() -> None:
    hub = Hub(queue_size=16, keepalive_slices=4)
    subs = [hub.subscribe(TopicFilter.parse("*")) for _ in range(10)]
    per_tick = []
    for part in range(4):
        hub.tick(part)
        per_tick.append(sum(pings(s) for s in subs))
    assert per_tick == [3, 3, 2, 2], "a quarter of the streams per tick, never all at once"
    for part in range(4):
        hub.tick(part)
    assert [pings(s) for s in subs] == [1] * 10, "one ping per stream per interval"


async def test_one_keepalive_slice_pings_every_stream_at_once() -> None:
    hub = Hub(queue_size=16)
    subs = [hub.subscribe(TopicFilter.parse("*")) for _ in range(3)]
    hub.tick()
    assert [pings(s) for s in subs] == [1, 1, 1]

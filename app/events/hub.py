"""The hub: this process's open streams and long polls, and what each gets.

Pure dispatch, no I/O: ``app/events/reader.py`` (the one Redis reader per
process) hands every event to ``Hub.dispatch``, which pushes it to the
subscriptions whose topic filter matches. A subscription is a bounded queue
plus a wake-up flag; its stream (``app/events/drain.py``) drains everything
pending in one go and writes it as one chunk. An event's bytes are built once
per format (``Event.frame``), not once per subscriber. Keep-alives are one
shared frame per tick (``run_keepalive``), and each tick pings one of
``keepalive_slices`` shares of the streams: every stream still gets one ping
per interval, but a ping to all of them at once was one more write to every
stream, a burst as long as an event's, and the events that came during it
waited (issue 20: at 1,000 streams x 10/s with a 1 s keep-alive, the events
sent within 150 ms of a ping were 12-37 ms slower than the others in each of
seven runs; with ten slices, -8 to +9 ms in five; docs/scaling.md).

Streams are paced (``pacing.Pacer``): at most ``stream_max_rate`` writes
per second each, and fewer when ``stream_write_budget`` writes per second
spread over all open streams says so; every write carries all that is
pending, because on a busy server the per-write cost (one ``send()`` and the
ASGI path) dominates.

A stream that falls behind fills its queue; its backlog is then conflated
(``conflation``: the newest value per series plus a ``skip`` marker). One
that had something pending at a keep-alive tick and wrote nothing by the
next is stuck, not slow (its client stopped reading): it is dropped (its
request task is cancelled, which closes the connection) and resumes by id
when it reconnects. Memory per stream is bounded by ``stream_queue_size``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections import Counter, deque
from dataclasses import dataclass

from app.events.conflation import Skip, conflate
from app.events.event import Event, EventKey, parse_event_id
from app.events.pacing import Pacer
from app.events.sse import control_frame, ping_frame
from app.events.topics import TopicFilter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reset:
    """The log the streams follow was replaced (Redis lost its data): start over from ``cursor``.

    Encoded once for every stream; ``key`` is where each stream's de-duplication restarts.
    """

    key: EventKey
    frame: bytes

    @classmethod
    def to(cls, cursor: str, reason: str) -> Reset:
        frame = control_frame("reset", {"reason": reason, "cursor": cursor}, cursor)
        return cls(parse_event_id(cursor) or (0, 0), frame)


# Events, shared control frames (keep-alive, status), resets and conflation markers.
QueueItem = Event | bytes | Reset | Skip


class Subscription:
    """One open stream (or waiting long poll) in this process.

    Waking is a bare future rather than an ``asyncio.Event``: it is the
    per-stream, per-write hot path. ``_owed`` is set from the first push after
    a drain until the next drain, so a burst costs one wake-up (or one place
    in the pacer's bucket), not one per event.
    """

    __slots__ = (
        "_owed",
        "_pacer",
        "_ready",
        "_waiter",
        "backlogged",
        "closed",
        "conflate",
        "due",
        "limit",
        "phase",
        "progressed",
        "queue",
        "reason",
        "task",
        "topics",
    )

    def __init__(
        self,
        topics: TopicFilter,
        limit: int,
        task: asyncio.Task[object] | None,
        pacer: Pacer | None = None,
        conflate: bool = False,
        phase: int = 0,
    ) -> None:
        self.topics = topics
        # Which share of the streams it is in for keep-alive pings (Hub.tick).
        self.phase = phase
        self.queue: deque[QueueItem] = deque()
        self.limit = limit
        self.closed = False
        self.reason = ""
        self.task = task
        self.conflate = conflate
        # For the stuck-stream sweep: had something pending at the last
        # keep-alive tick / drained anything since.
        self.backlogged = False
        self.progressed = False
        # Loop time before which the pacer holds wake-ups back (rate cap).
        self.due = 0.0
        self._pacer = pacer
        self._owed = False
        self._ready = False
        self._waiter: asyncio.Future[None] | None = None

    def push(self, item: QueueItem) -> bool:
        """Queue an item; False when the queue is full (the broker conflates or drops us)."""
        queue = self.queue
        if len(queue) >= self.limit:
            return False
        queue.append(item)
        if not self._owed:
            self._owed = True
            pacer = self._pacer
            if pacer is None or pacer.admit(self, asyncio.get_running_loop().time()):
                self.wake()
        elif not self._ready and len(queue) >= self.limit >> 1:
            # A backlog is building while the pacer holds us back: write now
            # rather than overflow waiting for the timer (the cap is there to
            # fill writes, never to make a healthy stream look slow).
            self.wake()
        return True

    def wake(self) -> None:
        self._ready = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.reason = reason
            self.wake()

    async def wait(self) -> None:
        if not self._ready:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self._ready = False

    def drain(self) -> list[QueueItem]:
        items = list(self.queue)
        self.queue.clear()
        self._owed = False
        self.progressed = True
        if self._pacer is not None:
            self.due = asyncio.get_running_loop().time() + self._pacer.interval
        return items

    def conflate_queue(self) -> int:
        """Cut the backlog to the newest value per series; how many events were skipped."""
        kept, skipped = conflate(self.queue)
        self.queue = deque(kept)
        return skipped


class Claim:
    """A stream slot counted for its owner from the moment the open was allowed until it subscribes.

    Without it, the opens of a reconnect storm were all checked against the
    per-token limit before any of them subscribed, and all got in. Given back
    if the stream never subscribes (a refusal after the check, a client gone
    before its body ran): when the claim is dropped, at the latest.
    """

    __slots__ = ("__weakref__", "_finalizer")

    def __init__(self, hub: Hub, owner: str) -> None:
        hub._owned[owner] += 1
        self._finalizer = weakref.finalize(self, hub._give_back, owner)

    def transfer(self) -> None:
        """The subscription counts from now on."""
        self._finalizer.detach()


class Hub:
    """This process's subscribers, and the dispatch of events and shared frames to them."""

    def __init__(
        self,
        queue_size: int,
        stream_max_rate: float = 0.0,
        write_budget: float = 0.0,
        keepalive_slices: int = 1,
    ) -> None:
        self.queue_size = queue_size
        self.keepalive_slices = keepalive_slices
        self._phases = itertools.count()
        self.subscriptions: set[Subscription] = set()
        # Open streams per owner (a token), kept as they come and go: a reconnect storm
        # of 10,000 streams would otherwise count them all on every open.
        self._owned: Counter[str] = Counter()
        # Most streams open at once since the set was last rebuilt (see _forget).
        self._peak = 0
        self.last_key: EventKey | None = None
        self.dropped = 0
        self.delivered = 0
        self.conflated = 0
        # Streams share one pacer (the rate cap); long polls want every wake at once.
        self.pacer = Pacer(stream_max_rate, write_budget) if stream_max_rate > 0 or write_budget > 0 else None
        # Set while the reader follows the log; cleared (and streams told "stale") while it cannot.
        self.healthy = asyncio.Event()
        # Set once the process is shutting down: new streams are refused.
        self.closing = False

    # --- lifecycle ----------------------------------------------------------
    def end_streams(self, reason: str = "shutdown") -> None:
        """Ask every open stream to finish (a deploy is under way)."""
        self.closing = True
        for sub in list(self.subscriptions):
            sub.close(reason)

    # --- subscribers --------------------------------------------------------
    def subscribe(self, topics: TopicFilter, *, cancel_on_overflow: bool = True) -> Subscription:
        """A stream (paced, conflated when it falls behind) or, without ``cancel_on_overflow``, a long poll."""
        task = asyncio.current_task() if cancel_on_overflow else None
        stream = cancel_on_overflow
        sub = Subscription(
            topics,
            self.queue_size,
            task,
            self.pacer if stream else None,
            conflate=stream,
            phase=next(self._phases) % self.keepalive_slices,
        )
        self.subscriptions.add(sub)
        if (owner := topics.owner) is not None and not topics.take_claim():
            self._owned[owner] += 1
        self._peak = max(self._peak, len(self.subscriptions))
        if self.pacer is not None:
            self.pacer.resize(len(self.subscriptions))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._forget(sub)
        if self.pacer is not None:
            self.pacer.resize(len(self.subscriptions))

    def follows_from(self, key: EventKey | None) -> bool:
        """True when nothing after ``key`` has been dispatched yet while the log is followed:
        a subscription made now receives every event after ``key``."""
        return key is not None and self.last_key is not None and self.healthy.is_set() and self.last_key <= key

    def streams_of(self, owner: str) -> int:
        """How many of this process's streams ``owner`` has open (or allowed to open: ``claim``)."""
        return self._owned.get(owner, 0)

    def claim(self, owner: str) -> Claim:
        """Count a stream ``owner`` was just allowed to open, before it subscribes."""
        return Claim(self, owner)

    def _give_back(self, owner: str) -> None:
        self._owned[owner] -= 1
        if self._owned[owner] <= 0:
            del self._owned[owner]

    def _forget(self, sub: Subscription) -> None:
        if sub in self.subscriptions:
            self.subscriptions.discard(sub)
            if (owner := sub.topics.owner) is not None:
                self._give_back(owner)
        # A set never shrinks its table on removal, and iterating it walks the
        # whole table: after a peak of 10,000 streams, every event's dispatch
        # would cost ~50 µs with none left open. Rebuild it once it is mostly empty.
        if self._peak > 64 and len(self.subscriptions) * 4 < self._peak:
            self.subscriptions = set(self.subscriptions)
            self._peak = len(self.subscriptions)

    def _drop(self, sub: Subscription) -> None:
        """A subscriber whose queue is full: free its memory and end its connection."""
        self.dropped += 1
        self._forget(sub)
        sub.queue.clear()
        sub.close("slow-consumer")
        # The stream may be stuck in a socket write that never completes; only
        # cancelling its task frees it. The client reconnects and resumes by id.
        if sub.task is not None and not sub.task.done():
            sub.task.cancel()

    def _overflow(self, sub: Subscription, item: QueueItem) -> bool:
        """A full queue: conflate it, or drop the subscriber if that frees no room. True if ``item`` got in."""
        if sub.conflate:
            skipped = sub.conflate_queue()
            self.conflated += skipped
            if sub.push(item):
                return True
        self._drop(sub)
        return False

    def dispatch(self, event: Event) -> None:
        if self.last_key is not None and event.key <= self.last_key:
            return
        self.last_key = event.key
        for sub in tuple(self.subscriptions):
            if sub.topics.matches(event.topic) and (sub.push(event) or self._overflow(sub, event)):
                self.delivered += 1

    def broadcast(self, item: bytes | Reset, phase: int | None = None) -> None:
        """One shared item to every subscriber (of one keep-alive ``phase`` if given), whatever its topics."""
        for sub in tuple(self.subscriptions):
            if (phase is None or sub.phase == phase) and not sub.push(item):
                self._overflow(sub, item)

    def sweep_stuck(self) -> None:
        """Drop streams that had something to send a whole keep-alive interval ago and sent nothing since.

        Conflation keeps a slow stream's memory bounded but never ends it; a
        client that stopped reading leaves its stream blocked in a socket
        write, which this notices (a paced or merely slow stream drains well
        within an interval).
        """
        for sub in tuple(self.subscriptions):
            if not sub.conflate:
                continue
            if sub.backlogged and not sub.progressed and sub.queue:
                self._drop(sub)
                continue
            sub.backlogged = bool(sub.queue)
            sub.progressed = False

    def tick(self, part: int = 0) -> None:
        """A slice of a keep-alive interval passed: one shared ``ping`` to the streams of that slice.

        The first slice of each interval also drops stuck streams. With one
        slice, every stream is pinged at once.
        """
        if part == 0:
            self.sweep_stuck()
        self.broadcast(ping_frame(), phase=part)  # with one slice every phase is 0

    # --- what the reader reports ----------------------------------------------
    def feed_lost(self) -> None:
        """The reader lost the log: streams stay open, told that what they show is stale."""
        if self.healthy.is_set():
            self.healthy.clear()
            self.broadcast(control_frame("status", {"state": "stale", "reason": "storage-unreachable"}))

    def feed_restored(self, *, was_lost: bool) -> None:
        if was_lost:
            self.broadcast(control_frame("status", {"state": "live"}))
        self.healthy.set()

    def restart_from(self, cursor: str, reason: str) -> None:
        """The log was replaced (Redis lost its data): every stream gets one shared ``reset``."""
        log.warning("event log restarted (%s); resetting %d streams", reason, len(self.subscriptions))
        self.last_key = parse_event_id(cursor) or (0, 0)
        self.broadcast(Reset.to(cursor, reason))


async def run_keepalive(hub: Hub, interval: float) -> None:
    """The keep-alive clock: every stream gets a ``ping`` each interval, a slice of them at a time (until cancelled)."""
    slices = hub.keepalive_slices
    while True:
        for part in range(slices):
            await asyncio.sleep(interval / slices)
            hub.tick(part)

"""Conflation: what a stream that fell behind gets instead of its whole backlog.

When a stream's queue is full, its pending ``metric`` events are cut down to
the newest one per series (device, metric), preferring the newest that became
the series' latest value, and a ``skip`` control event goes in front of them
saying how many were left out. Every other pending item (annotations, alerts,
presence, control frames) is kept: those are not superseded by a newer value.
The kept items stay in log order and keep their ids, so ``Last-Event-ID``
still resumes correctly after them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.events.event import Event
from app.events.sse import control_frame

METRIC = "metric"


def series_of(event: Event) -> tuple[str, str, bool] | None:
    """``(topic, metric, became latest)`` of a metric event, None for anything else."""
    if event.type != METRIC:
        return None
    data = event.data()
    if not isinstance(data, dict):
        return None
    return event.topic, str(data.get("metric", "")), bool(data.get("latest", True))


@dataclass(frozen=True, slots=True)
class Skip:
    """Stands in a queue for metric events conflated away; becomes a ``skip`` event on the wire."""

    count: int

    def frame(self) -> bytes:
        # No id: the stream's Last-Event-ID stays at the last event it really sent.
        return control_frame("skip", {"skipped": self.count, "reason": "slow-consumer"})


def conflate(items: Iterable[Any]) -> tuple[list[Any], int]:
    """The items to keep (one ``Skip`` first) and how many more metric events were skipped now."""
    earlier = 0
    pending = []
    for item in items:
        if isinstance(item, Skip):
            earlier += item.count  # conflated before and not yet written: one marker for all
        else:
            pending.append(item)
    keep_at: dict[tuple[str, str], tuple[int, bool]] = {}
    for index, item in enumerate(pending):
        series = series_of(item) if isinstance(item, Event) else None
        if series is None:
            continue
        topic, metric, latest = series
        kept = keep_at.get((topic, metric))
        # A late, older reading (latest=false) never displaces one that became the latest.
        if kept is None or latest or not kept[1]:
            keep_at[(topic, metric)] = (index, latest)
    wanted = {index for index, _ in keep_at.values()}
    kept_items = []
    skipped = 0
    for index, item in enumerate(pending):
        if isinstance(item, Event) and item.type == METRIC and index not in wanted:
            skipped += 1
        else:
            kept_items.append(item)
    if skipped or earlier:
        kept_items.insert(0, Skip(earlier + skipped))
    return kept_items, skipped

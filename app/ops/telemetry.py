"""Prometheus metrics: what is measured, and how several workers add up.

Every metric is defined here, once, with its multiprocess behaviour. With
``PROMETHEUS_MULTIPROC_DIR`` set (``livedash run`` sets it; a ``Procfile``
deployment sets it in the environment) prometheus-client keeps each worker's
values in memory-mapped files in that directory and ``/metrics`` answers the
sum over all of them, whichever worker the scrape lands on. Without it the
figures are this process's own.

The hot paths stay plain: the hub keeps integer counters and its queues;
a sampler task (``run_sampler``) copies them into the metrics once a second
and on every scrape, so a stream never touches a metric per event. The same
task PINGs Redis, which is the Redis-latency histogram. Figures that are one
number for the whole deployment (events ever written to the log, its length)
are read from Redis at scrape time, not summed over workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from app.services import Services

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from app.events.hub import Hub
from app.settings import Settings

log = logging.getLogger(__name__)

SAMPLE_INTERVAL = 1.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# One sample per counter, not a `_created` twin as well: less to scrape and store.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Our metrics live in a registry of their own: the default one would also
# carry prometheus-client's process collectors, which multiprocess mode cannot sum.
REGISTRY = CollectorRegistry(auto_describe=True)

STREAMS_OPEN = Gauge(
    "livedash_streams_open",
    "Open SSE streams and waiting long polls",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
QUEUED_EVENTS = Gauge(
    "livedash_stream_queued_events",
    "Events waiting in subscriber queues",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
QUEUE_DEPTH_MAX = Gauge(
    "livedash_stream_queue_depth_max",
    "Deepest subscriber queue (of any worker)",
    multiprocess_mode="livemax",
    registry=REGISTRY,
)
READER_HEALTHY = Gauge(
    "livedash_event_reader_healthy",
    "1 while every worker's event-log reader reads",
    multiprocess_mode="livemin",
    registry=REGISTRY,
)
DELIVERED = Counter("livedash_events_delivered", "Events queued to subscribers", registry=REGISTRY)
DROPPED = Counter("livedash_streams_dropped", "Subscribers dropped as slow consumers", registry=REGISTRY)
CONFLATED = Counter(
    "livedash_events_conflated", "Events skipped by conflating a slow stream's backlog", registry=REGISTRY
)
READINGS_ACCEPTED = Counter(
    "livedash_readings_accepted", "Readings stored, by source (http, line, mqtt, demo)", ["source"], registry=REGISTRY
)
INGEST_REJECTED = Counter(
    "livedash_ingest_rejected",
    "Batches (HTTP, line protocol) or messages (MQTT) refused as invalid, by source",
    ["source"],
    registry=REGISTRY,
)
INGEST_SECONDS = Histogram(
    "livedash_ingest_seconds",
    "Time to store a batch of readings (Redis script and alert evaluation)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
REDIS_PING_SECONDS = Histogram(
    "livedash_redis_ping_seconds",
    "Round trip of a Redis PING, sampled every second by every worker",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
    registry=REGISTRY,
)
REDIS_ERRORS = Counter("livedash_redis_ping_errors", "Redis PINGs that failed or timed out", registry=REGISTRY)
HTTP_REQUESTS = Counter(
    "livedash_http_requests",
    "HTTP requests by route template, method and status",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "livedash_http_request_seconds",
    "Time to the response's start, by route template (a stream counts until its headers)",
    ["route"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0),
    registry=REGISTRY,
)
STREAMS_CLOSED = Counter(
    "livedash_streams_closed",
    "Streams ended, by reason (client-gone, slow-consumer, shutdown, ...)",
    ["reason"],
    registry=REGISTRY,
)
GC_PAUSE = Histogram(
    "livedash_gc_pause_seconds",
    "Time the cyclic garbage collector stopped the process, by generation (2: a full collection)",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0),
    registry=REGISTRY,
)
LOOP_LAG = Histogram(
    "livedash_event_loop_lag_seconds",
    "How late a periodic tick of the event loop ran: the loop was busy or blocked that long",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0),
    registry=REGISTRY,
)
MQTT_CONNECTED = Gauge(
    "livedash_mqtt_connected",
    "1 while this deployment's MQTT bridge is connected",
    multiprocess_mode="livemax",
    registry=REGISTRY,
)


# Figures gathered where a metric may not be touched (a gc callback can run
# while this thread holds prometheus-client's non-reentrant lock), handed to
# the metrics on the loop before each sample.
_before_sample: list[Callable[[], None]] = []


def before_sample(hook: Callable[[], None]) -> None:
    """Run ``hook`` before every sample (each second and on every scrape); once, however often registered."""
    if hook not in _before_sample:
        _before_sample.append(hook)


def multiprocess_mode() -> bool:
    # prometheus-client chose its value store from the environment at import;
    # asking it the same way keeps the two in step.
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


@dataclass
class BrokerSampler:
    """Copies the hub's plain counters into the metrics (counters by delta)."""

    hub: Hub
    redis: Redis
    delivered: int = 0
    dropped: int = 0
    conflated: int = 0

    def sample(self) -> None:
        for hook in _before_sample:
            hook()
        broker = self.hub
        subs = tuple(broker.subscriptions)
        STREAMS_OPEN.set(len(subs))
        depths = [len(s.queue) for s in subs]
        QUEUED_EVENTS.set(sum(depths))
        QUEUE_DEPTH_MAX.set(max(depths, default=0))
        READER_HEALTHY.set(1 if broker.healthy.is_set() else 0)
        for name, metric in (("delivered", DELIVERED), ("dropped", DROPPED), ("conflated", CONFLATED)):
            now = int(getattr(broker, name))
            delta = now - getattr(self, name)
            if delta > 0:
                metric.inc(delta)
            setattr(self, name, now)


async def ping_redis(redis: Redis) -> None:
    start = time.perf_counter()
    try:
        await redis.ping()
    except (RedisError, OSError):
        REDIS_ERRORS.inc()
        return
    REDIS_PING_SECONDS.observe(time.perf_counter() - start)


async def run_sampler(sampler: BrokerSampler, interval: float = SAMPLE_INTERVAL) -> None:
    while True:
        try:
            sampler.sample()
            await ping_redis(sampler.redis)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Metrics must never take a worker down; the next tick tries again.
            log.exception("metrics sampler failed")
        await asyncio.sleep(interval)


@dataclass
class LogFigures:
    """Deployment-wide figures read from Redis at scrape time."""

    published: int | None = None
    length: int | None = None


async def read_log_figures(redis: Redis, log_key: str) -> LogFigures:
    figures = LogFigures()
    with contextlib.suppress(RedisError, OSError):
        info = await redis.xinfo_stream(log_key)
        figures.length = int(info.get("length", 0))
        # entries-added (Redis 7+, Valkey): every event ever appended, across
        # all workers and machines, so it is not double-counted per worker.
        added = info.get("entries-added")
        figures.published = int(added) if added is not None else None
    return figures


class LogCollector(Collector):
    def __init__(self, figures: LogFigures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        if self.figures.published is not None:
            yield CounterMetricFamily(
                "livedash_events_published",
                "Events appended to the event log (all processes)",
                value=self.figures.published,
            )
        if self.figures.length is not None:
            yield GaugeMetricFamily("livedash_event_log_length", "Events kept in the log", value=self.figures.length)


async def exposition(svc: Services) -> bytes:
    """The text a scrape gets: every worker's metrics (multiprocess) or ours, plus the log's figures."""
    svc.sampler.sample()  # this worker's figures as of now, not as of the last tick
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    # Registered and removed with no await in between, so concurrent scrapes never overlap.
    collector = LogCollector(await read_log_figures(svc.redis, svc.keys.events))
    registry.register(collector)
    try:
        return generate_latest(registry)
    finally:
        registry.unregister(collector)


def process_exited(settings: Settings) -> None:
    """A worker is going away: its live gauges stop counting (counters stay summed)."""
    if multiprocess_mode() and settings.prometheus_multiproc_dir is not None:
        multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
            os.getpid(), str(settings.prometheus_multiproc_dir)
        )


def prepare_multiproc_dir(path: os.PathLike[str] | str) -> None:
    """An empty directory for a new deployment: stale files would add old workers' figures."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(path, name))

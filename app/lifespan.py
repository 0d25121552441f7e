"""Opening and closing a process's services, in one place and one order.

``init_app`` registers the two hooks: ``before_serving`` opens the Redis
pools, builds every service into one ``Services`` (``app/services.py``) and
starts the background tasks; ``after_serving`` closes them in the reverse
order, explicitly, so shutdown never depends on which hook was registered
first. Tests run inside ``app.test_app()`` and see the same lifecycle as
hypercorn. Two Redis clients: a pool for commands, and one connection that
only the event reader's ``XREAD BLOCK`` uses; never a connection per stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from quart import Quart

from app.alerts.service import Alerting
from app.auth.guard import Guard
from app.auth.revocation import run_rechecks
from app.documents.alert_rules import AlertStore
from app.documents.annotations import AnnotationStore
from app.events.fragments import HtmlFragments
from app.events.hub import Hub
from app.events.log import EventLog
from app.events.reader import READ_BLOCK_MS, EventReader
from app.events.sse import json_frame
from app.ingest.demo import run_simulator
from app.ingest.mqtt import run_bridge
from app.ops import gc_tuning, loop_lag, telemetry
from app.ops.shutdown import graceful_on_sigterm, hypercorn_shutdown_event, watch_shutdown
from app.presence import PresenceStore, run_sweeper
from app.series import SeriesStore
from app.services import SLOT, Services
from app.settings import Settings
from app.storage.clients import command_client, reader_client
from app.storage.embedded import EmbeddedServer
from app.storage.keyspace import Keys

log = logging.getLogger(__name__)

TASK_STOP_TIMEOUT = 5.0


def redis_url(settings: Settings) -> str:
    """REDIS_URL, or the embedded server's socket (started if nobody runs it yet)."""
    if settings.redis_url:
        return settings.redis_url
    server = EmbeddedServer(settings.data_dir)
    if server.ensure_running():
        log.info("started the embedded Redis-protocol server under %s", server.data_dir)
    return server.url


async def open_services(app: Quart, settings: Settings) -> Services:
    # Starting the embedded server is blocking (a subprocess, a socket poll): keep it off the loop.
    url = await asyncio.to_thread(redis_url, settings)
    redis = command_client(url, settings.redis_pool_size)
    reader = reader_client(url, READ_BLOCK_MS / 1000)
    keys = Keys(settings.key_prefix)
    hub = Hub(
        settings.stream_queue_size,
        settings.stream_max_rate,
        settings.stream_write_budget,
        settings.keepalive_slices,
    )
    events_reader = EventReader(
        hub, reader, EventLog(reader, keys.events, settings.event_log_maxlen, keys.epoch), settings.keepalive_interval
    )
    fragments = HtmlFragments(app.jinja_loader)
    svc = Services(
        settings=settings,
        keys=keys,
        redis=redis,
        reader=reader,
        log=EventLog(redis, keys.events, settings.event_log_maxlen, keys.epoch),
        hub=hub,
        events_reader=events_reader,
        series=SeriesStore.from_settings(redis, keys, settings),
        annotations=AnnotationStore(redis, keys, settings),
        alerts=AlertStore(redis, keys, settings),
        alerting=Alerting(redis, keys, settings),
        presence=PresenceStore(
            redis, keys, int((settings.presence_ttl + settings.presence_grace) * 1000), settings.event_log_maxlen
        ),
        guard=Guard(settings, redis, keys),
        sampler=telemetry.BrokerSampler(hub, redis),
        encoders={"json": json_frame, "html": fragments.frame},
        fragments=fragments,
    )
    try:
        await svc.alerting.configure()
        await events_reader.start()
    except BaseException:
        await reader.aclose()
        await redis.aclose()
        raise
    start_background_tasks(svc)
    # Last of the start-up: what exists now lives as long as the process.
    gc_tuning.tune(settings.gc_threshold, settings.gc_freeze, settings.stall_log)
    return svc


def start_background_tasks(svc: Services) -> None:
    settings = svc.settings

    def spawn(name: str, work: Coroutine[Any, Any, None]) -> None:
        svc.tasks.append(asyncio.create_task(work, name=f"livedash-{name}"))

    spawn("sampler", telemetry.run_sampler(svc.sampler))
    if settings.loop_lag_interval > 0:
        spawn("loop-lag", loop_lag.run_probe(settings.loop_lag_interval, settings.stall_log))
    # Every process sweeps presence expiry; the leave script makes each leave happen once.
    spawn("presence-sweeper", run_sweeper(svc.presence, settings.presence_sweep_interval, svc.stopping))
    # Every process sweeps no-data deadlines and delivers notifications; Lua and the consumer group decide who.
    svc.alerting.start(spawn, svc.stopping)
    if settings.auth_on:
        spawn(
            "auth-recheck",
            run_rechecks(
                svc.guard.tokens,
                svc.guard.sessions,
                svc.hub,
                settings.auth_recheck_interval,
                settings.session_reauth_before,
                svc.stopping,
            ),
        )
    shutdown = hypercorn_shutdown_event()
    if shutdown is not None:
        # A SIGTERM to the worker itself (a whole process group signalled) is a graceful stop too.
        graceful_on_sigterm(shutdown, svc.hub.end_streams)
        spawn("shutdown-watch", watch_shutdown(shutdown, svc.hub.end_streams))
    if settings.demo:
        spawn("demo", run_simulator(svc, settings.demo_interval))
        log.info("demo simulator on: posting readings every %ss", settings.demo_interval)
    if settings.mqtt_url:
        # Every process runs it; only the holder of a Redis lease connects.
        spawn("mqtt", run_bridge(svc, settings.mqtt_url, settings.mqtt_topic, settings.mqtt_qos))


async def close_services(svc: Services) -> None:
    """The reverse of opening: streams told first, tasks stopped, the reader, then the pools."""
    svc.hub.end_streams()
    svc.stopping.set()
    for task in svc.tasks:
        task.cancel()
    if svc.tasks:
        done, pending = await asyncio.wait(svc.tasks, timeout=TASK_STOP_TIMEOUT)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("background task %s failed", task.get_name(), exc_info=task.exception())
        for task in pending:
            log.warning("background task %s did not stop within %ss", task.get_name(), TASK_STOP_TIMEOUT)
    svc.tasks.clear()
    await svc.events_reader.stop()
    telemetry.process_exited(svc.settings)
    await svc.reader.aclose()
    await svc.redis.aclose()


def init_app(app: Quart, settings: Settings) -> None:
    @app.before_serving
    async def _open() -> None:
        app.extensions[SLOT] = await open_services(app, settings)

    @app.after_serving
    async def _close() -> None:
        svc = app.extensions.pop(SLOT, None)
        if svc is not None:
            await close_services(svc)

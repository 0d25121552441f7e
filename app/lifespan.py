"""The engine: this process's Redis clients and the services built on them.

Opened in ``before_serving`` and closed in ``after_serving``, so whoever owns
a pool is explicit and tests (run inside ``app.test_app()``) see the same
lifecycle as hypercorn. Two clients: a pool for commands, and one connection
that only the broker's ``XREAD BLOCK`` uses. Never a connection per stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from quart import Quart, current_app
from redis.asyncio import Redis

from app.documents.alert_rules import AlertStore
from app.documents.annotations import AnnotationStore
from app.events.event import Event
from app.events.hub import READ_BLOCK_MS, Broker
from app.events.log import EventLog
from app.presence import PresenceStore
from app.series import SeriesStore
from app.settings import Settings
from app.storage.clients import command_client, reader_client
from app.storage.embedded import EmbeddedServer
from app.storage.keyspace import Keys

log = logging.getLogger(__name__)


@dataclass
class Engine:
    settings: Settings
    keys: Keys
    redis: Redis
    reader: Redis
    log: EventLog
    broker: Broker
    series: SeriesStore
    annotations: AnnotationStore
    alerts: AlertStore
    presence: PresenceStore
    # Stream formats: name -> encoder of one event's frame (json, html).
    encoders: dict[str, Callable[[Event], bytes]] = field(default_factory=dict)

    async def close(self) -> None:
        await self.broker.stop()
        await self.reader.aclose()
        await self.redis.aclose()


def redis_url(settings: Settings) -> str:
    """REDIS_URL, or the embedded server's socket (started if nobody runs it yet)."""
    if settings.redis_url:
        return settings.redis_url
    server = EmbeddedServer(settings.data_dir)
    if server.ensure_running():
        log.info("started the embedded Redis-protocol server under %s", server.data_dir)
    return server.url


async def open_engine(settings: Settings) -> Engine:
    # Starting the embedded server is blocking (a subprocess, a socket poll): keep it off the loop.
    url = await asyncio.to_thread(redis_url, settings)
    redis = command_client(url, settings.redis_pool_size)
    reader = reader_client(url, READ_BLOCK_MS / 1000)
    keys = Keys(settings.key_prefix)
    event_log = EventLog(redis, keys.events, settings.event_log_maxlen, keys.epoch)
    broker = Broker(
        reader,
        EventLog(reader, keys.events, settings.event_log_maxlen, keys.epoch),
        settings.keepalive_interval,
        settings.stream_queue_size,
        settings.stream_max_rate,
        settings.stream_write_budget,
    )
    engine = Engine(
        settings=settings,
        keys=keys,
        redis=redis,
        reader=reader,
        log=event_log,
        broker=broker,
        series=SeriesStore(redis, keys, settings.history_size, settings.event_log_maxlen),
        annotations=AnnotationStore(redis, keys, settings),
        alerts=AlertStore(redis, keys, settings),
        presence=PresenceStore(
            redis, keys, int((settings.presence_ttl + settings.presence_grace) * 1000), settings.event_log_maxlen
        ),
    )
    try:
        await broker.start()
    except BaseException:
        await reader.aclose()
        await redis.aclose()
        raise
    return engine


def init_app(app: Quart, settings: Settings) -> None:
    @app.before_serving
    async def _open() -> None:
        app.extensions["livedash"] = await open_engine(settings)

    @app.after_serving
    async def _close() -> None:
        engine_ = app.extensions.pop("livedash", None)
        if engine_ is not None:
            await engine_.close()


def engine_of(app: Quart) -> Engine:
    return app.extensions["livedash"]  # type: ignore[no-any-return]


def engine() -> Engine:
    """The engine of the app handling the current request."""
    return engine_of(current_app)

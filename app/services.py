"""The one object a process serves requests with, and the one way to reach it.

``Services`` holds everything a worker opened for the app: its settings, the
Redis pools, the event log, the hub and its reader, the stores, the request
guard, the metrics sampler, the stream encoders and the OpenAPI document.
``app/lifespan.py`` builds it in ``before_serving`` and closes it in
``after_serving``; routes, hooks and background tasks reach it through
``services()`` (inside a request) or ``services_of(app)``.

Only types are imported here, so any module may import this one without
pulling in the rest of the app (and without an import cycle).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quart import Quart, current_app

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from app.alerts.service import Alerting
    from app.auth.guard import Guard
    from app.documents.alert_rules import AlertStore
    from app.documents.annotations import AnnotationStore
    from app.events.event import Event
    from app.events.fragments import HtmlFragments
    from app.events.hub import Hub
    from app.events.log import EventLog
    from app.events.reader import EventReader
    from app.ops.telemetry import BrokerSampler
    from app.presence import PresenceStore
    from app.series import SeriesStore
    from app.settings import Settings
    from app.storage.keyspace import Keys

SLOT = "livedash"


@dataclass
class Services:
    settings: Settings
    keys: Keys
    redis: Redis  # the command pool
    reader: Redis  # the one connection the event reader blocks on
    log: EventLog
    hub: Hub  # this process's streams and long polls: pure dispatch
    events_reader: EventReader  # the one task that reads the log and feeds the hub
    series: SeriesStore
    annotations: AnnotationStore
    alerts: AlertStore
    alerting: Alerting  # no-data sweeper, notification channels and deliveries (app/alerts/)
    presence: PresenceStore
    guard: Guard
    sampler: BrokerSampler
    # Stream formats: name -> encoder of one event's frame (json, html).
    encoders: dict[str, Callable[[Event], bytes]] = field(default_factory=dict)
    # The htmx flavour's renderer, shared by the stream (encoders["html"]) and /api/events?format=html.
    fragments: HtmlFragments | None = None
    # Built on first use (every blueprint is registered by then).
    openapi: dict[str, Any] | None = None
    # Background tasks this process runs for the app; ``stopping`` asks them to finish.
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


def services_of(app: Quart) -> Services:
    return app.extensions[SLOT]  # type: ignore[no-any-return]


def services() -> Services:
    """The services of the app handling the current request."""
    return services_of(current_app)

"""``Alerting``: what a process holds for alerts beyond the rules, and the tasks it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis

from app.alerts.addresses import parse_networks
from app.alerts.channels import ChannelStore
from app.alerts.delivery import Deliverer
from app.alerts.marks import AlertMarks
from app.alerts.nodata import NoDataSweeper, run_nodata_sweeper
from app.settings import Settings
from app.storage.keyspace import Keys

Spawn = Callable[[str, Coroutine[Any, Any, None]], None]


class Alerting:
    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.sweeper = NoDataSweeper(redis, keys, settings.event_log_maxlen)
        allowed = parse_networks(settings.webhook_allow_networks)
        self.channels = ChannelStore(redis, keys, allowed, settings.webhook_log_size)
        self.deliverer = Deliverer(redis, keys, settings, self.channels, allowed)
        self.marks = AlertMarks(redis, keys, settings.event_log_maxlen)

    async def configure(self) -> None:
        """What the Lua scripts read from Redis rather than from their arguments (the ingest script's are fixed)."""
        await self.redis.hset(self.keys.alert_config, "history_maxlen", self.settings.alert_history_maxlen)

    def start(self, spawn: Spawn, stop: asyncio.Event) -> None:
        """Every process sweeps no-data deadlines and delivers notifications; Redis decides who does what."""
        spawn("alert-nodata", run_nodata_sweeper(self.sweeper, self.settings.alert_sweep_interval, stop))
        spawn("alert-delivery", self.deliverer.run(stop))

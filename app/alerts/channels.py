"""Notification channels: where transitions are delivered, and each one's delivery log.

A channel is ``webhook`` (a JSON body describing the transition, signed with
``X-Livedash-Signature: sha256=<hex>``, an HMAC-SHA256 of the body under the
channel's secret) or ``chat`` (``{"text": ...}``, which Slack and Mattermost
incoming webhooks accept; signed the same way). Channels live in one Redis
hash (id -> JSON); admins manage them. The secret is shown once, in the
answer that creates (or rotates) it, never in a listing.

Each delivery attempt is logged (newest first, the last
``LIVEDASH_WEBHOOK_LOG_SIZE``): when, which transition, the attempt number,
the HTTP status or the error, and whether it was the last.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.alerts.addresses import Network, check_url
from app.documents.versioned import Actor, new_id
from app.errors import Unprocessable
from app.storage.keyspace import Keys
from app.validation import now_ms

# The consumer group every process reads the outbox through (app/alerts/delivery.py).
OUTBOX_GROUP = "deliver"

Kind = Literal["webhook", "chat"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000)]
Secret = Annotated[str, StringConstraints(min_length=16, max_length=200)]


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    kind: Kind = "webhook"
    url: Url
    secret: Secret | None = Field(None, description="HMAC key; generated (and shown once) when left out.")
    enabled: bool = True


class ChannelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name | None = None
    kind: Kind | None = None
    url: Url | None = None
    secret: Secret | None = None
    rotate_secret: bool = False
    enabled: bool | None = None


def public(channel: dict[str, Any]) -> dict[str, Any]:
    """A channel as listings show it: never its secret."""
    return {k: v for k, v in channel.items() if k != "secret"}


class ChannelStore:
    def __init__(self, redis: Redis, keys: Keys, allowed: tuple[Network, ...], log_size: int) -> None:
        self.redis = redis
        self.keys = keys
        self.allowed = allowed
        self.log_size = log_size

    def _check(self, url: str | None) -> None:
        if url is None:
            return
        problem = check_url(url, self.allowed)
        if problem is not None:
            raise Unprocessable([{"field": "url", "error": problem}])

    async def create(self, data: ChannelCreate, actor: Actor) -> dict[str, Any]:
        self._check(data.url)
        now = now_ms()
        channel = {
            **data.model_dump(exclude={"secret"}),
            "id": new_id(),
            "secret": data.secret or secrets.token_urlsafe(32),
            "created": now,
            "updated": now,
            "by": actor.name,
            "by_id": actor.subject,
        }
        await self.redis.hset(self.keys.alert_channels, channel["id"], orjson.dumps(channel))
        # The outbox and its group exist from the first channel on, so its first transition is read at once.
        try:
            await self.redis.xgroup_create(self.keys.alert_outbox, OUTBOX_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        return channel

    async def update(self, channel_id: str, patch: ChannelUpdate, actor: Actor) -> dict[str, Any] | None:
        """The channel as stored now, or None if there is none. Last write wins."""
        self._check(patch.url)
        current = await self.get(channel_id)
        if current is None:
            return None
        changes = patch.model_dump(exclude_none=True, exclude={"rotate_secret"})
        if patch.rotate_secret:
            changes["secret"] = secrets.token_urlsafe(32)
        channel = {**current, **changes, "updated": now_ms(), "by": actor.name, "by_id": actor.subject}
        await self.redis.hset(self.keys.alert_channels, channel_id, orjson.dumps(channel))
        return channel

    async def delete(self, channel_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.alert_channels, channel_id)
            pipe.delete(self.keys.alert_delivery_log(channel_id))
            removed, _ = await pipe.execute()
        return bool(removed)

    async def get(self, channel_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.keys.alert_channels, channel_id)
        return orjson.loads(raw) if raw else None

    async def all(self) -> list[dict[str, Any]]:
        raw = await self.redis.hvals(self.keys.alert_channels)
        return sorted((orjson.loads(r) for r in raw), key=lambda c: (c["name"], c["id"]))

    async def unknown(self, ids: list[str]) -> list[str]:
        """Which of these channel ids do not exist."""
        if not ids:
            return []
        found = await self.redis.hmget(self.keys.alert_channels, ids)
        return [i for i, raw in zip(ids, found, strict=True) if raw is None]

    async def record(self, channel_id: str, entry: dict[str, Any]) -> None:
        key = self.keys.alert_delivery_log(channel_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, orjson.dumps(entry))
            pipe.ltrim(key, 0, self.log_size - 1)
            await pipe.execute()

    async def log(self, channel_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(r) for r in await self.redis.lrange(self.keys.alert_delivery_log(channel_id), 0, -1)]

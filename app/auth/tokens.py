"""API tokens: roles, scopes, expiry, stored hashed in Redis.

A token is ``ldt_`` plus 32 random bytes (URL-safe base64). Redis keeps only
the sha256 of it: the record lives at ``token:<sha256>`` (with the token's
expiry as the key's own expiry, so an expired token is simply gone) and an
index maps each token's short public id to that hash, for listing and
revoking. sha256 is enough because the secret is high-entropy: there is no
password to brute-force, and a lookup by hash needs no constant-time compare.

Roles: ``viewer`` reads (streams, snapshots, presence); ``editor`` also writes
annotations; ``admin`` also manages alert rules and tokens; ``device`` only
ingests readings, optionally only for the devices it names; ``metrics`` only
reads ``/metrics`` (a Prometheus scraper; ``LIVEDASH_METRICS_TOKEN`` is one
that needs no Redis). Any token may carry a topic scope (``device/line-2-*``)
that narrows what it sees.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from redis.asyncio import Redis

from app.storage.batching import BatchedGet
from app.storage.keyspace import Keys
from app.validation import Slug, parse_model

TOKEN_PREFIX = "ldt_"
TOKEN_ID_PATTERN = r"^[0-9a-f]{12}$"
# A scope is topic patterns: the characters topics are made of, plus `*`.
SCOPE_PATTERN = r"^[A-Za-z0-9_.:/*-]{1,200}$"


class Role(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"
    DEVICE = "device"
    METRICS = "metrics"  # reads /metrics only (Prometheus)


Scope = Annotated[str, StringConstraints(pattern=SCOPE_PATTERN)]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class TokenCreate(BaseModel):
    """What an admin asks for (``POST /api/tokens``, ``livedash token create``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    # Its display name: who writes, edits and is present with it (absent: "token <id>"). An admin may rename it.
    name: Name | None = None
    scope: list[Scope] | None = Field(None, max_length=32)
    devices: list[Slug] | None = Field(None, max_length=1000)
    # Seconds from now; absent: the token does not expire.
    expires_in: float | None = Field(None, gt=0, le=10 * 365 * 24 * 3600)


class TokenUpdate(BaseModel):
    """What an admin may change about a token (``POST /api/tokens/<id>``): its display name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name


class TokenRecord(BaseModel):
    """What Redis keeps about a token (never the token itself)."""

    model_config = ConfigDict(frozen=True)

    id: str
    role: Role
    name: str
    scope: list[str] | None = None
    devices: list[str] | None = None
    created_at: int
    expires_at: int | None = None

    def public(self) -> dict[str, Any]:
        return self.model_dump()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bootstrap_fingerprint(token: str, secret_key: str) -> str:
    """What stands for ``LIVEDASH_ADMIN_TOKEN`` where other tokens have their hash (sessions, rate counters).

    A session opened with the bootstrap token records this, so it lasts only as
    long as that token does: an operator who rotates the token (or unsets it)
    and restarts ends every session opened with the old one. Keyed with
    ``SECRET_KEY`` rather than a bare sha256 like other tokens' hashes: those
    are 32 random bytes, but this one is chosen by an operator (16 characters
    at least) and may be guessable, so Redis must not hold something a guess
    can be checked against offline. The prefix keeps it apart from every
    token hash (``token:bootstrap:…`` is never written).
    """
    return "bootstrap:" + hmac.new(secret_key.encode(), token.encode(), hashlib.sha256).hexdigest()


def looks_like_token(value: str) -> bool:
    return 16 <= len(value) <= 256 and re.fullmatch(r"[A-Za-z0-9_.~+/=-]+", value) is not None


def parse_create(body: Any) -> TokenCreate:
    return parse_model(TokenCreate, body)


class TokenStore:
    def __init__(self, redis: Redis, keys: Keys, bootstrap: str | None = None) -> None:
        self.redis = redis
        self.keys = keys
        # This process's LIVEDASH_ADMIN_TOKEN fingerprint (``bootstrap_fingerprint``): live while it is configured.
        self.bootstrap = bootstrap
        self._batched = BatchedGet(redis)

    async def create(self, spec: TokenCreate) -> tuple[str, TokenRecord]:
        """A new token: the plaintext (shown once, to whoever asked) and its record."""
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = int(time.time() * 1000)
        expires_at = now + int(spec.expires_in * 1000) if spec.expires_in else None
        token_id = secrets.token_hex(6)
        record = TokenRecord(
            id=token_id,
            role=spec.role,
            name=spec.name or f"token {token_id}",
            scope=spec.scope or None,
            devices=spec.devices if spec.devices is not None else None,
            created_at=now,
            expires_at=expires_at,
        )
        digest = hash_token(plaintext)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.token(digest), record.model_dump_json(), pxat=expires_at)
            pipe.hset(self.keys.tokens, record.id, digest)
            await pipe.execute()
        return plaintext, record

    async def lookup(self, plaintext: str) -> TokenRecord | None:
        """The record of a live token, by its plaintext; None if unknown, revoked or expired."""
        return await self.by_hash(hash_token(plaintext))

    async def by_hash(self, digest: str) -> TokenRecord | None:
        # Batched: a reconnect storm's lookups share MGETs (app/storage/batching.py).
        return self.record_from(await self._batched.get(self.keys.token(digest)))

    @staticmethod
    def record_from(raw: bytes | str | None) -> TokenRecord | None:
        """A stored token (the value of ``Keys.token``), or None when absent or expired."""
        if raw is None:
            return None
        record = TokenRecord.model_validate(orjson.loads(raw))
        if record.expires_at is not None and record.expires_at <= time.time() * 1000:
            return None  # Redis expires the key; this covers the last few milliseconds
        return record

    async def live_hashes(self, digests: list[str]) -> set[str]:
        """Which of these token hashes still name a live token (one round trip).

        The bootstrap token's fingerprint is live only if it is this process's
        own: one of a rotated (or unset) ``LIVEDASH_ADMIN_TOKEN`` is gone.
        """
        live = {d for d in digests if self.bootstrap is not None and d == self.bootstrap}
        stored = [d for d in digests if d not in live]
        if not stored:
            return live
        async with self.redis.pipeline(transaction=False) as pipe:
            for digest in stored:
                pipe.exists(self.keys.token(digest))
            found = await pipe.execute()
        return live | {d for d, n in zip(stored, found, strict=True) if n}

    async def list(self) -> list[TokenRecord]:
        index = {_text(k): _text(v) for k, v in (await self.redis.hgetall(self.keys.tokens)).items()}
        if not index:
            return []
        ids = list(index)
        raws = await self.redis.mget([self.keys.token(index[i]) for i in ids])
        records, stale = [], []
        for token_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                stale.append(token_id)
            else:
                records.append(TokenRecord.model_validate(orjson.loads(raw)))
        if stale:
            # Expired tokens vanish on their own; their index entries are swept here.
            await self.redis.hdel(self.keys.tokens, *stale)
        return sorted(records, key=lambda r: r.created_at)

    async def get(self, token_id: str) -> TokenRecord | None:
        """A live token's record by its public id."""
        if not re.fullmatch(TOKEN_ID_PATTERN, token_id):
            return None
        digest = await self.redis.hget(self.keys.tokens, token_id)
        return None if digest is None else await self.by_hash(_text(digest))

    async def rename(self, token_id: str, name: str) -> TokenRecord | None:
        """Give a token a new display name; its id (the subject), role, scope and expiry stay.

        ``SET XX KEEPTTL``: a token revoked or expired meanwhile is not brought
        back, and its expiry is kept. Two renames at once: the last one wins.
        """
        record = await self.get(token_id)
        if record is None:
            return None
        renamed = record.model_copy(update={"name": name})
        digest = _text(await self.redis.hget(self.keys.tokens, token_id) or b"")
        stored = await self.redis.set(self.keys.token(digest), renamed.model_dump_json(), xx=True, keepttl=True)
        return renamed if stored else None

    async def count_admins(self) -> int:
        return sum(1 for r in await self.list() if r.role is Role.ADMIN)

    async def revoke(self, token_id: str) -> TokenRecord | None:
        """Delete a token; its sessions and open streams end at their next check."""
        if not re.fullmatch(TOKEN_ID_PATTERN, token_id):
            return None
        raw = await self.redis.hget(self.keys.tokens, token_id)
        if raw is None:
            return None
        digest = _text(raw)
        record = await self.by_hash(digest)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.token(digest))
            pipe.hdel(self.keys.tokens, token_id)
            await pipe.execute()
        return record

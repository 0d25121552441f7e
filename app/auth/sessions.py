"""Browser sessions: a signed cookie naming a session kept in Redis.

The cookie holds only a random session id, signed with ``SECRET_KEY``
(itsdangerous), so it cannot be forged or altered. What the session is lives
in Redis (``session:<id>``): the hash of the token it was opened with, its
CSRF token and when it ends. Keeping it server-side is what lets a logout,
a renewal made on another worker, or a revoked token reach every process:
each request and each stream re-check reads the record.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis.asyncio import Redis

from app.storage.keyspace import Keys

COOKIE_NAME = "livedash_session"
SESSION_ID_BYTES = 24


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    # sha256 of the token the session was opened with, or LIVEDASH_ADMIN_TOKEN's fingerprint
    # (tokens.bootstrap_fingerprint): either way the session ends when that token does.
    token_hash: str
    csrf: str
    expires_at: int  # Unix ms
    # A session opened with a JWT (token_hash "jwt:..."): the identity it stood for, as JSON
    # (app/auth/issuer.py); there is no token record to look it up by.
    identity: str | None = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SessionStore:
    def __init__(self, redis: Redis, keys: Keys, secret_key: str, ttl: float) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = int(ttl * 1000)
        self.signer = URLSafeTimedSerializer(secret_key, salt="livedash-session")

    def cookie_value(self, session_id: str) -> str:
        return self.signer.dumps(session_id)

    def session_id(self, cookie: str) -> str | None:
        """The id inside a cookie we signed within the session lifetime; None otherwise."""
        try:
            value = self.signer.loads(cookie, max_age=max(1, self.ttl_ms // 1000))
        except BadSignature:  # also SignatureExpired, its subclass
            return None
        return value if isinstance(value, str) and len(value) < 100 else None

    async def open(self, token_hash: str, not_after: int | None, identity: str | None = None) -> SessionRecord:
        """A new session for a token; it never outlives the token itself (a JWT: its ``exp``)."""
        expires_at = int(time.time() * 1000) + self.ttl_ms
        if not_after is not None:
            expires_at = min(expires_at, not_after)
        record = SessionRecord(
            secrets.token_urlsafe(SESSION_ID_BYTES), token_hash, secrets.token_urlsafe(24), expires_at, identity
        )
        await self._store(record)
        return record

    async def _store(self, record: SessionRecord) -> None:
        key = self.keys.session(record.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            mapping: dict[str, str | int] = {
                "token": record.token_hash,
                "csrf": record.csrf,
                "expires_at": record.expires_at,
            }
            if record.identity is not None:
                mapping["identity"] = record.identity
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.pexpireat(key, record.expires_at)
            await pipe.execute()

    async def get(self, session_id: str) -> SessionRecord | None:
        raw = {_text(k): _text(v) for k, v in (await self.redis.hgetall(self.keys.session(session_id))).items()}
        if "token" not in raw or "csrf" not in raw:
            return None
        record = SessionRecord(
            session_id, raw["token"], raw["csrf"], int(raw.get("expires_at", "0")), raw.get("identity")
        )
        if record.expires_at <= time.time() * 1000:
            return None
        return record

    async def expiries(self, session_ids: list[str]) -> dict[str, int]:
        """Each live session's end, Unix ms (one round trip); ended sessions are absent."""
        if not session_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                pipe.hget(self.keys.session(sid), "expires_at")
            found = await pipe.execute()
        now = time.time() * 1000
        return {sid: int(raw) for sid, raw in zip(session_ids, found, strict=True) if raw and int(raw) > now}

    async def renew(self, record: SessionRecord, not_after: int | None) -> SessionRecord:
        expires_at = int(time.time() * 1000) + self.ttl_ms
        if not_after is not None:
            expires_at = min(expires_at, not_after)
        renewed = SessionRecord(record.id, record.token_hash, record.csrf, expires_at, record.identity)
        await self._store(renewed)
        return renewed

    async def close(self, session_id: str) -> None:
        await self.redis.delete(self.keys.session(session_id))

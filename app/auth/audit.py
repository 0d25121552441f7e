"""The audit log: who did what, when, kept in a capped Redis Stream.

Failed logins and denied requests, token changes, and every accepted write
go here (never a token or a cookie, only token ids and names). Admins read
it with ``GET /api/audit``. Writing it is best-effort: an audit entry that
cannot be stored is logged, and never fails the request it describes.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.storage.keyspace import Keys

log = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, redis: Redis, keys: Keys, maxlen: int) -> None:
        self.redis = redis
        self.key = keys.audit
        self.maxlen = maxlen

    async def record(self, action: str, who: str, **details: Any) -> None:
        entry = {"action": action, "who": who, **details}
        try:
            await self.redis.xadd(self.key, {"entry": orjson.dumps(entry)}, maxlen=self.maxlen, approximate=True)
        except (RedisError, OSError) as exc:
            log.warning("audit entry not stored (%s): %s", exc, entry)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        """Newest first, each ``{id, ts, action, who, ...}``."""
        rows = await self.redis.xrevrange(self.key, count=limit) or []
        out = []
        for entry_id, fields in rows:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            item = orjson.loads((fields or {}).get(b"entry", b"{}"))
            out.append({"id": eid, "ts": int(eid.split("-")[0]), **item})
        return out

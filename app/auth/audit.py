"""The audit log: who did what, when, kept in capped Redis Streams.

Two logs, so that nobody without a credential can push the one that matters
out of its bound:

- the **security log** (``audit``): token changes, logins and logouts, and
  every accepted write to annotations and alert rules. Only callers who hold
  a credential add to it.
- the **refusal log** (``audit:refusals``): 401, 403 (role, CSRF, cross-site
  login), 429 and failed logins. Refusals are counted per source (the client
  address) in a fixed window, in one hash per source (``refusals.lua``), and
  only sampled into the log: the 1st, 2nd, 4th, 8th, ... of each kind from
  a source in a window, each entry carrying that count. 10,000 bogus tokens
  from one address write about 14 entries and leave one key, never a key per
  token. The same count is what limits failed credentials per address
  (``Guard.refuse``: 429 past ``LIVEDASH_AUTH_FAILURE_LIMIT``).

Admins read them with ``GET /api/audit`` (the security log) and
``GET /api/audit?kind=refusals``. Never a token or a cookie is written, only
token ids and names. Writing is best-effort: an entry that cannot be stored
is logged, and never fails the request it describes.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, NamedTuple

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.storage import lua as scripts
from app.storage.keyspace import Keys

log = logging.getLogger(__name__)

Kind = Literal["security", "refusals"]
KINDS: tuple[Kind, ...] = ("security", "refusals")
MAX_SOURCE = 64


class Refusal(NamedTuple):
    """What the source's window holds after counting one refusal."""

    of_kind: int  # refusals of this kind from this source in the window
    failures: int  # failed credentials (unknown tokens, failed logins) from this source in the window
    left_ms: int  # until the window ends


class AuditLog:
    def __init__(
        self, redis: Redis, keys: Keys, maxlen: int, refusals_maxlen: int = 1_000, window: float = 60.0
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.key = keys.audit
        self.maxlen = maxlen
        self.refusals_maxlen = refusals_maxlen
        self.window_ms = max(1, int(window * 1000))
        self.script = scripts.load(redis, "refusal")

    async def record(self, action: str, who: str, **details: Any) -> None:
        """A security entry (token changes, logins, accepted writes)."""
        entry = {"action": action, "who": who, **details}
        try:
            await self.redis.xadd(self.key, {"entry": orjson.dumps(entry)}, maxlen=self.maxlen, approximate=True)
        except (RedisError, OSError) as exc:
            log.warning("audit entry not stored (%s): %s", exc, entry)

    async def refused(
        self, source: str | None, kind: str, who: str, *, failure: bool = False, **details: Any
    ) -> Refusal | None:
        """Count one refusal against its source (sampled into the refusal log); None if Redis failed."""
        source = (source or "unknown")[:MAX_SOURCE]
        entry = {"action": kind, "who": who, "source": source, **details}
        try:
            count, failures, left_ms = await self.script(
                keys=[self.keys.refusals(source), self.keys.audit_refusals],
                args=[self.window_ms, kind, int(failure), self.refusals_maxlen, orjson.dumps(entry)],
            )
        except (RedisError, OSError) as exc:
            log.warning("refusal not counted (%s): %s", exc, entry)
            return None
        return Refusal(int(count), int(failures), int(left_ms))

    async def recent(self, limit: int, kind: Kind = "security") -> list[dict[str, Any]]:
        """Newest first, each ``{id, ts, action, who, ...}`` (refusals also ``source`` and ``count``)."""
        key = self.key if kind == "security" else self.keys.audit_refusals
        rows = await self.redis.xrevrange(key, count=limit) or []
        out = []
        for entry_id, fields in rows:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            fields = fields or {}
            item = orjson.loads(fields.get(b"entry", b"{}"))
            if b"count" in fields:
                item["count"] = int(fields[b"count"])
            out.append({"id": eid, "ts": int(eid.split("-")[0]), **item})
        return out

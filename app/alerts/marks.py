"""What people do with alerts and what they read: acknowledge, silence, the firing list, the history.

Acknowledge (editors) and silence (admins) are one Lua run each
(``alert_mark.lua``): the check (the rule exists; for an ack, it is firing),
the write and its event (``alert_ack`` / ``alert_silence`` on the rule's
device topic, so everyone watching sees it live, and scoped tokens only for
their devices). The next transition clears an ack. A silence lasts until a
time: transitions are still evaluated, recorded and sent as ``alert``
events (marked ``silenced``), but nothing is delivered to channels.

The history is a Redis Stream of transitions (``alerts:history``, capped at
``LIVEDASH_ALERT_HISTORY_MAXLEN``), written by the script that makes each
transition; it is read newest first, between two times, filtered by rule,
device and what the caller may see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from redis.asyncio import Redis

from app.documents.versioned import Actor
from app.errors import Conflict, NotFound
from app.settings import parse_duration_ms
from app.storage import lua as scripts
from app.storage.keyspace import Keys
from app.validation import now_ms, parse_ts

MAX_SILENCE_MS = 30 * 86_400_000
HISTORY_PAGE = 500
HISTORY_PAGES = 20  # at most this many pages read to fill one answer after filtering


class SilenceBody(BaseModel):
    """Exactly one of ``until`` (RFC 3339 or epoch ms) and ``duration`` (``90m``, ``2h``, seconds as a number)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    until: Any = Field(None, description="RFC 3339 or Unix epoch ms, in the next 30 days")
    duration: Any = Field(None, description="90s, 30m, 2h, 1d (or seconds as a number), at most 30 days")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None

    @field_validator("until")
    @classmethod
    def _until(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        ms = parse_ts(value)
        if ms <= now_ms():
            raise ValueError("must be in the future")
        if ms > now_ms() + MAX_SILENCE_MS:
            raise ValueError("must be within 30 days")
        return ms

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise ValueError("must be a duration such as 30m or 2h, or seconds")
        if isinstance(value, int | float):
            ms = int(value * 1000)
        elif isinstance(value, str):
            text = value.strip()
            try:
                ms = int(float(text) * 1000) if text.replace(".", "", 1).isdigit() else parse_duration_ms(text)
            except ValueError:
                raise ValueError("must be a duration such as 30m or 2h, or seconds") from None
        else:
            raise ValueError("must be a duration such as 30m or 2h, or seconds")
        if not 1_000 <= ms <= MAX_SILENCE_MS:
            raise ValueError("must be between 1 s and 30 days")
        return ms

    @model_validator(mode="after")
    def _one(self) -> SilenceBody:
        if (self.until is None) == (self.duration is None):
            raise ValueError("give exactly one of until and duration")
        return self

    def until_ms(self) -> int:
        return int(self.until) if self.until is not None else now_ms() + int(self.duration)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    rule: str | None = None
    device: str | None = None
    start: int | None = None  # ms, inclusive
    end: int | None = None  # ms, inclusive
    limit: int = 100
    before: str | None = None  # a history id: continue below it (the previous answer's `next`)


class AlertMarks:
    def __init__(self, redis: Redis, keys: Keys, log_maxlen: int) -> None:
        self.redis = redis
        self.keys = keys
        self.log_maxlen = log_maxlen
        self._mark = scripts.load(redis, "alert_mark")

    async def _write(self, mode: str, rule_id: str, mark: dict[str, Any]) -> dict[str, Any]:
        k = self.keys
        now = now_ms()
        head = orjson.dumps({**mark, "at": now})[:-1]
        answer: Any = await self._mark(
            keys=[k.alert_rules, k.alert_state, k.alert_acks, k.alert_silences, k.events],
            args=[mode, rule_id, head, self.log_maxlen, now],
        )
        status, stored, event_id = (part.decode() for part in answer)
        if status == "missing":
            raise NotFound(f"no alert rule {rule_id!r}")
        if status == "not_firing":
            raise Conflict(f"alert rule {rule_id!r} is not firing: nothing to acknowledge", code="not_firing")
        return {
            "rule_id": rule_id,
            "ack" if mode == "ack" else "silence": orjson.loads(stored),
            "event_id": event_id,
        }

    async def ack(self, rule_id: str, actor: Actor) -> dict[str, Any]:
        who = orjson.loads(actor.members())
        return await self._write("ack", rule_id, who)

    async def silence(self, rule_id: str, body: SilenceBody, actor: Actor) -> dict[str, Any]:
        who = orjson.loads(actor.members())
        return await self._write("silence", rule_id, {**who, "until": body.until_ms(), "reason": body.reason})

    async def unsilence(self, rule_id: str, actor: Actor) -> dict[str, Any]:
        return await self._write("unsilence", rule_id, {})

    async def marks(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Acks and live silences by rule id."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.alert_acks)
            pipe.hgetall(self.keys.alert_silences)
            acks, silences = await pipe.execute()
        now = now_ms()
        live = {}
        for rule_id, raw in silences.items():
            silence = orjson.loads(raw)
            if int(silence.get("until") or 0) > now:
                live[rule_id.decode()] = silence
        return {r.decode(): orjson.loads(v) for r, v in acks.items()}, live

    async def history(
        self, query: HistoryQuery, visible: Callable[[str], bool]
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Transitions newest first, and the id to continue from (None: nothing older matches the range)."""
        high = (
            f"({query.before}" if query.before else ("+" if query.end is None else f"{query.end}-18446744073709551615")
        )
        low = "-" if query.start is None else f"{query.start}-0"
        found: list[dict[str, Any]] = []
        for _ in range(HISTORY_PAGES):
            page: Any = await self.redis.xrevrange(self.keys.alert_history, high, low, count=HISTORY_PAGE)
            for raw_id, fields in page:
                entry_id = raw_id.decode()
                device, rule_id = fields[b"device"].decode(), fields[b"rule"].decode()
                if query.rule not in (None, rule_id) or query.device not in (None, device) or not visible(device):
                    continue
                data = orjson.loads(fields[b"data"])
                found.append({"id": entry_id, "event_id": fields[b"event"].decode(), **data})
                if len(found) == query.limit:
                    return found, entry_id
            if len(page) < HISTORY_PAGE:
                return found, None
            high = f"({page[-1][0].decode()}"
        return found, high[1:]

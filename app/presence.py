"""Presence: who is looking at which room, per browser tab.

A tab (a ``session``) sends a heartbeat every few seconds. Each heartbeat
renews a per-session Redis key whose ``PX`` is the tab's remaining life
(TTL + grace); a per-room sorted set scores the session with the same
deadline, and an index of rooms scored by their earliest deadline lets a
sweeper find what is due without SCAN or keyspace notifications.

Where things happen:

- ``scripts/presence_heartbeat.lua``: join / refresh / update, with its event.
- ``scripts/presence_leave.lua``: explicit leave and expiry. The ``leave``
  event goes out only from the run whose ZREM removed the session, so it is
  emitted exactly once however many processes race for it.
- ``run_sweeper``: runs in every process; it only proposes candidates, the
  script decides (it re-checks the heartbeat key on Redis's clock).

Every event is ``type: presence`` on topic ``room/<room>`` with data
``{action, room, tab, user, subject, self_declared, state, tabs[, reason]}``
where ``tab`` is a hash of the session (the session id itself is never shown
to others: whoever knows it could end that tab's presence) and ``tabs`` is how
many tabs that person (``subject``) still has in the room after the change.

Who is present comes from the caller's identity: ``user`` is its display
name and ``subject`` its stable id (a token id, a JWT's ``jwt:<sub>``), so
two tokens that share a name are two people, and a body's ``user`` is
ignored. Only with authentication off is the typed name used, marked
``self_declared: true`` (subject ``self:<name>``, or ``tab:<tab>`` unnamed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.documents.versioned import Actor
from app.events.event import ZERO_ID
from app.storage import lua as scripts
from app.storage.keyspace import Keys
from app.validation import BLANK_PATTERN, parse_model, shaped

log = logging.getLogger(__name__)

# "dashboard", "device:pump-1": a lowercase kind, optionally ':' and a slug.
ROOM_PATTERN = r"^[a-z][a-z0-9_-]{0,31}(?::[A-Za-z0-9_.-]{1,64})?$"
ROOM_MAX = 97
# Random ids from the page (crypto.randomUUID()); short ones would be guessable.
SESSION_PATTERN = r"^[A-Za-z0-9_.-]{8,64}$"
# A display name: printable, one line.
USER_MAX = 64


Room = Annotated[
    str,
    StringConstraints(max_length=ROOM_MAX),
    shaped(ROOM_PATTERN, "must look like 'dashboard' or 'device:pump-1' (lowercase kind, optional ':slug')"),
]
Session = Annotated[
    str,
    StringConstraints(max_length=64),
    shaped(SESSION_PATTERN, "must be 8 to 64 characters of [A-Za-z0-9_.-] (e.g. crypto.randomUUID())"),
]
User = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=USER_MAX),
    shaped(r"^[^\x00-\x1f\x7f]+$", "must be one line of printable text"),
]
# "viewing", "editing:<annotation id>": the same shape as a room.
State = Annotated[
    str,
    StringConstraints(max_length=ROOM_MAX),
    shaped(ROOM_PATTERN, "must look like 'viewing' or 'editing:<annotation id>'"),
]

# Sessions handled per room per sweep; the rest wait for the next sweep.
SWEEP_BATCH = 200


class Leave(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    room: Room
    session: Session


def _blank_is_default(schema: dict[str, Any]) -> None:
    """The JSON Schema (the API description) says what ``_blank_user`` and ``_blank_state`` do: null or blank
    is the default."""
    shape = {key: schema.pop(key) for key in list(schema) if key not in ("default", "title", "description")}
    schema["anyOf"] = [shape, {"type": "string", "pattern": BLANK_PATTERN}, {"type": "null"}]


class Heartbeat(Leave):
    user: User | None = Field(
        None,
        description="Ignored while authentication is on: who is present is the caller's identity. With "
        "LIVEDASH_AUTH=off, the name shown, marked `self_declared: true`.",
        json_schema_extra=_blank_is_default,
    )
    state: State = Field("viewing", json_schema_extra=_blank_is_default)

    # Forms post empty fields as ""; that means "not given", not a name or state.
    @field_validator("user", mode="before")
    @classmethod
    def _blank_user(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("state", mode="before")
    @classmethod
    def _blank_state(cls, value: Any) -> Any:
        return "viewing" if value is None or (isinstance(value, str) and not value.strip()) else value


# The routes' name for it (app/web/routes/presence.py).
parse_body = parse_model


def tab_id(session: str) -> str:
    """What others see of a session: stable per tab, useless for acting as it."""
    return hashlib.blake2b(session.encode(), digest_size=8).hexdigest()


def room_topic(room: str) -> str:
    return f"room/{room}"


@dataclass(frozen=True, slots=True)
class Beat:
    """What a heartbeat did: ``join``, ``update`` or ``refresh`` (no event)."""

    action: str
    tab: str
    event_id: str | None


class PresenceStore:
    def __init__(self, redis: Redis, keys: Keys, life_ms: int, log_maxlen: int) -> None:
        self.redis = redis
        self.keys = keys
        self.life_ms = life_ms
        self.log_maxlen = log_maxlen
        self._heartbeat = scripts.load(redis, "presence_heartbeat")
        self._leave = scripts.load(redis, "presence_leave")

    def _keys(self, room: str, session: str) -> list[str]:
        k = self.keys
        return [
            k.presence_rooms,
            k.presence_expiry(room),
            k.presence_members(room),
            k.presence_heartbeat(room, session),
            k.events,
        ]

    async def heartbeat(self, beat: Heartbeat, actor: Actor) -> Beat:
        """``actor``: who the caller is (``Identity.actor``); the beat's own ``user`` is not read here."""
        tab = tab_id(beat.session)
        subject = actor.subject or (f"self:{actor.name}" if actor.name else f"tab:{tab}")
        args: list[str | int] = [beat.session, tab, beat.room, actor.name or "", beat.state]
        args += [self.life_ms, self.log_maxlen, room_topic(beat.room), subject, int(actor.self_declared)]
        action, event_id = await self._heartbeat(keys=self._keys(beat.room, beat.session), args=args)
        return Beat(_text(action), tab, _text(event_id) if event_id else None)

    async def leave(self, room: str, session: str, reason: str = "left") -> str | None:
        """End a session's presence; the ``leave`` event id, or None if it was not (or no longer) there."""
        event_id = await self._leave(
            keys=self._keys(room, session),
            args=[session, tab_id(session), room, reason, self.log_maxlen, room_topic(room)],
        )
        return _text(event_id) if event_id else None

    async def snapshot(self, room: str) -> dict[str, Any]:
        """The room's members grouped by person (subject), and the event-log cursor read in the same step."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hvals(self.keys.presence_members(room))
            pipe.xrevrange(self.keys.events, count=1)
            raw, newest = await pipe.execute()
        groups: dict[str, list[dict[str, Any]]] = {}
        people: dict[str, dict[str, Any]] = {}
        for value in raw:
            member = orjson.loads(value)
            subject = member.get("subject") or f"self:{member.get('user') or ''}"  # records from before subjects
            people[subject] = {"user": member.get("user"), "self_declared": bool(member.get("self_declared"))}
            groups.setdefault(subject, []).append(
                {"tab": member["tab"], "state": member["state"], "since": member["since"]}
            )
        users = []
        # Named people by name, unnamed ones (user null) last; the subject keeps namesakes apart.
        for subject in sorted(groups, key=lambda s: (people[s]["user"] is None, people[s]["user"] or "", s)):
            tabs = sorted(groups[subject], key=lambda t: (t["since"], t["tab"]))
            users.append(
                {
                    **people[subject],
                    "subject": subject,
                    "tabs": len(tabs),
                    "states": sorted({t["state"] for t in tabs}),
                    "sessions": tabs,
                }
            )
        cursor = _text(newest[0][0]) if newest else ZERO_ID
        return {"room": room, "users": users, "tabs": len(raw), "cursor": cursor}

    async def sweep_once(self) -> int:
        """Emit ``leave`` for every session whose heartbeat key Redis has expired; returns how many this run did."""
        seconds, micros = await self.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        emitted = 0
        due_rooms = await self.redis.zrangebyscore(self.keys.presence_rooms, "-inf", now_ms, start=0, num=SWEEP_BATCH)
        for raw_room in due_rooms:
            room = _text(raw_room)
            due = await self.redis.zrangebyscore(
                self.keys.presence_expiry(room), "-inf", now_ms, start=0, num=SWEEP_BATCH
            )
            for raw_session in due:
                if await self.leave(room, _text(raw_session), reason="expired"):
                    emitted += 1
        return emitted


async def run_sweeper(store: PresenceStore, interval: float, stop: asyncio.Event) -> None:
    """Sweep until ``stop`` is set. Every process runs this; the leave script makes each leave happen once."""
    while not stop.is_set():
        try:
            await store.sweep_once()
        except RedisError as exc:
            log.warning("presence sweeper: Redis unavailable (%s); retrying", exc)
        # 50-100 % of the interval: processes drift apart instead of sweeping in
        # lockstep, and a leave is still never later than one interval.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval * random.uniform(0.5, 1.0))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""Alert rules and their evaluation on ingest, on rule writes and by the no-data sweeper.

A rule is a threshold on one series: ``above`` or ``below`` a value, with an
optional hysteresis (how far back the value must come before the alert
resolves) and minimum duration (how long, in reading time, the value must
stay past the threshold before it fires); or (``kind: no_data``) "no reading
for ``no_data_seconds``" on one series, or on a whole device when ``metric``
is left out. A rule names the notification channels (``app/alerts/``) its
transitions are delivered to. Rules are versioned documents with the same
write rules as annotations (``versioned.py``, ``rule_write.lua``); the write
evaluates the rule against the series' latest value in the same script run.

Evaluation (``scripts/alert_eval.lua``) runs inside the ingest script, right
after a batch is stored (``series.py``): the readings, the state of each rule
and the ``alert`` event of a state change are one atomic step, so two
processes ingesting the same series agree on every transition and emit each
exactly once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator
from redis.asyncio import Redis

from app.documents.versioned import NOBODY, Actor, VersionedScript, Written, new_id
from app.errors import Unprocessable
from app.events.event import ZERO_ID
from app.settings import Settings
from app.storage import lua as scripts
from app.storage.keyspace import Keys, series_id
from app.validation import Slug, not_null

FIELDS = (
    "name",
    "kind",
    "device",
    "metric",
    "tags",
    "series",
    "op",
    "threshold",
    "hysteresis",
    "min_duration_ms",
    "no_data_seconds",
    "channels",
    "enabled",
)
IMMUTABLE = ("device", "metric", "tags", "kind")  # a different series (or kind) is a different rule
CLEARABLE = frozenset({"name"})
MAX_MIN_DURATION_MS = 7 * 24 * 3600 * 1000
MAX_NO_DATA_SECONDS = 7 * 24 * 3600
MAX_CHANNELS = 16


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


# Field before the BeforeValidator, so its bounds reach the JSON Schema as minimum / maximum.
Number = Annotated[float, Field(allow_inf_nan=False), BeforeValidator(_not_bool)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False), BeforeValidator(_not_bool)]
Duration = Annotated[int, Field(ge=0, le=MAX_MIN_DURATION_MS), BeforeValidator(_not_bool)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Op = Literal["above", "below"]
Kind = Literal["threshold", "no_data"]
NoDataSeconds = Annotated[int, Field(ge=1, le=MAX_NO_DATA_SECONDS), BeforeValidator(_not_bool)]
ChannelId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Channels = Annotated[list[ChannelId], Field(max_length=MAX_CHANNELS)]
Tags = Annotated[dict[Slug, Annotated[str, StringConstraints(max_length=128)]], Field(max_length=16)]


def _sorted_tags(value: dict[str, str] | None) -> dict[str, str] | None:
    # Stored sorted, so the immutability check compares like with like.
    return None if value is None else dict(sorted(value.items()))


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name | None = None
    kind: Kind = "threshold"
    device: Slug
    # Required for a threshold rule; a no-data rule without one watches the whole device.
    metric: Slug | None = None
    # The series is device + metric + these tags (all of them, as the readings carry them).
    tags: Tags = Field(default_factory=dict)
    op: Op | None = Field(None, description="Required for a threshold rule.")
    threshold: Number | None = Field(None, description="Required for a threshold rule.")
    hysteresis: NonNegative = 0.0
    min_duration_ms: Duration = 0
    no_data_seconds: NoDataSeconds | None = Field(None, description="Required for a no_data rule.")
    channels: Channels = Field(default_factory=list, description="Notification channel ids.")
    enabled: bool = True

    _tags = field_validator("tags")(_sorted_tags)

    def missing(self) -> list[dict[str, str]]:
        """What this kind of rule needs and lacks, as 422 details."""
        if self.kind == "no_data":
            errors = []
            if self.no_data_seconds is None:
                errors.append({"field": "no_data_seconds", "error": "required for a no_data rule"})
            if self.metric is None and self.tags:
                errors.append({"field": "tags", "error": "a device-wide rule (no metric) cannot have tags"})
            return errors
        need = ["metric", "op", "threshold"]
        return [{"field": f, "error": "required for a threshold rule"} for f in need if getattr(self, f) is None]


class RuleUpdate(BaseModel):
    """A partial update: fields present replace the stored ones, absent ones stay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # not_null: these may be left out, but not sent as null (_not_null); the JSON Schema says so.
    name: Name | None = None
    device: Slug | None = Field(None, json_schema_extra=not_null)  # may be sent (forms re-post it) but must not change
    metric: Slug | None = Field(None, json_schema_extra=not_null)
    tags: Tags | None = Field(None, json_schema_extra=not_null)
    op: Op | None = Field(None, json_schema_extra=not_null)
    threshold: Number | None = Field(None, json_schema_extra=not_null)
    hysteresis: NonNegative | None = Field(None, json_schema_extra=not_null)
    min_duration_ms: Duration | None = Field(None, json_schema_extra=not_null)
    no_data_seconds: NoDataSeconds | None = Field(None, json_schema_extra=not_null)
    channels: Channels | None = Field(None, json_schema_extra=not_null)
    kind: Kind | None = Field(None, json_schema_extra=not_null)  # may be sent but must not change
    enabled: bool | None = Field(None, json_schema_extra=not_null)
    version: int | None = Field(None, ge=1)

    _tags = field_validator("tags")(_sorted_tags)

    @field_validator(
        "device",
        "metric",
        "tags",
        "op",
        "threshold",
        "hysteresis",
        "min_duration_ms",
        "no_data_seconds",
        "channels",
        "kind",
        "enabled",
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Defaults are not validated, so this only sees an explicit null.
        if value is None:
            raise ValueError("may not be null")
        return value


def rule_form_fields(form: dict[str, str | None], *, update: bool) -> dict[str, Any]:
    """Forms post strings; an empty field is absent, except ``name`` which an update clears."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        if key == "channels":  # a comma list; empty clears them
            out[key] = [c.strip() for c in (value or "").split(",") if c.strip()]
            continue
        if key == "tags":  # k=v,k2=v2 (the series page posts its series' tags so); empty: none
            pairs = [p.partition("=") for p in (value or "").split(",") if p.strip()]
            out[key] = {k.strip(): v.strip() for k, sep, v in pairs} if all(sep for _, sep, _ in pairs) else value
            continue
        if value is None or value.strip() == "":
            if update and key in CLEARABLE:
                out[key] = None
            continue
        out[key] = value
    return out


class AlertStore:
    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.log_maxlen = settings.event_log_maxlen
        self.script = VersionedScript(
            redis,
            "rule_write",
            noun="alert_rule",
            event_type="alert_rule",
            event_key="rule",
            fields=FIELDS,
            settings=settings,
        )
        # The write evaluates the rule in the same run: alert_eval.lua's functions come before rule_write.lua.
        self.script.script = scripts.load(redis, "versioned", "alert_eval", "rule_write")

    def _keys(self, rule_id: str) -> list[str]:
        return [
            self.keys.alert_rule(rule_id),
            self.keys.alert_rule_revisions(rule_id),
            self.keys.events,
            self.keys.alert_rules,
            self.keys.alert_rules_by_series,
            self.keys.alert_state,
            self.keys.latest,
            self.keys.latest_ts,
        ]

    # --- rules ------------------------------------------------------------------

    async def create(self, data: RuleCreate, actor: Actor = NOBODY) -> Written:
        missing = data.missing()
        if missing:
            raise Unprocessable(missing)
        rule_id = new_id()
        sets = data.model_dump(exclude_none=True)
        # What alert_eval.lua looks rules up by: the series, or '<device>/*' for a device-wide rule.
        sets["series"] = f"{data.device}/*" if data.metric is None else series_id(data.device, data.metric, data.tags)
        return await self.script.write("create", rule_id, self._keys(rule_id), sets=sets, actor=actor)

    async def update(self, rule_id: str, patch: RuleUpdate, expected: int | None, actor: Actor = NOBODY) -> Written:
        given = patch.model_dump(exclude_unset=True, exclude={"version", *IMMUTABLE})
        immutable = {k: getattr(patch, k) for k in IMMUTABLE if getattr(patch, k) is not None}
        return await self.script.update(
            rule_id, self._keys(rule_id), given, CLEARABLE, expected=expected, immutable=immutable, actor=actor
        )

    async def delete(self, rule_id: str, expected: int | None, actor: Actor = NOBODY) -> Written:
        return await self.script.write("delete", rule_id, self._keys(rule_id), expected=expected, actor=actor)

    async def get(self, rule_id: str) -> dict[str, Any] | None:
        """The rule with its state, its tombstone (``deleted: true``), or None."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(self.keys.alert_rule(rule_id), "json")
            pipe.hget(self.keys.alert_state, rule_id)
            raw, state = await pipe.execute()
        if not raw:
            return None
        rule: dict[str, Any] = orjson.loads(raw)
        if not rule["deleted"]:
            rule["state"] = _state(state)
        return rule

    async def revisions(self, rule_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(r) for r in await self.redis.lrange(self.keys.alert_rule_revisions(rule_id), 0, -1)]

    async def rules(self) -> tuple[list[dict[str, Any]], str]:
        """Every live rule with its current state, and the event-log cursor of that snapshot."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.alert_rules)
            pipe.hgetall(self.keys.alert_state)
            pipe.xrevrange(self.keys.events, count=1)
            raw, states, newest = await pipe.execute()
        out = []
        for rule_id, doc in raw.items():
            rule = orjson.loads(doc)
            rule["state"] = _state(states.get(rule_id))
            out.append(rule)
        out.sort(
            key=lambda r: (r["device"], r["metric"] or "", sorted((r.get("tags") or {}).items()), r["created"], r["id"])
        )
        return out, _cursor(newest)

    # --- evaluation -------------------------------------------------------------


def _state(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {"state": "ok", "since": None, "pending_since": None, "last_value": None, "last_ts": None}
    return orjson.loads(raw)  # type: ignore[no-any-return]


def _cursor(newest: list[Any]) -> str:
    if not newest:
        return ZERO_ID
    event_id = newest[0][0]
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)

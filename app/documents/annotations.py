"""Annotations: notes pinned to a device (and optionally a metric) at a time.

Stored one Redis hash per annotation (fields as JSON text, plus the built
document), a revision list per annotation, and one sorted set of live ids by
``ts`` for listing. Every write goes through ``scripts/annotation_write.lua``
(the shared version check of ``versioned.py``); deletes leave a tombstone.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema, field_validator
from redis.asyncio import Redis

from app.documents.versioned import NOBODY, Actor, VersionedScript, Written, new_id
from app.errors import Unprocessable
from app.settings import Settings
from app.storage.keyspace import Keys
from app.validation import SENSOR_TIME_SCHEMA, Slug, not_null, now_ms, parse_ts

M = TypeVar("M", bound=BaseModel)

FIELDS = ("device", "metric", "ts", "ts_end", "text", "tags", "author", "author_id", "self_declared")
# Fields an update may set to null (or an empty form field) to remove them.
CLEARABLE = frozenset({"metric", "ts_end"})
# Who wrote it: set from the caller on every write (the note's author is its last writer), never from a body.
AUTHORSHIP = frozenset({"author", "author_id", "self_declared"})
AUTHOR_NOTE = (
    "Ignored while authentication is on: the author is the caller's identity (its display name; "
    "`author_id` is its stable subject). With LIVEDASH_AUTH=off there is no identity: this name is "
    "kept, and the annotation and its revision say `self_declared: true`."
)

MAX_TEXT = 4000
MAX_TAGS = 16
MAX_TAG = 64
MAX_AUTHOR = 64
# Listing scans the ts index newest first in pages, filtering as it goes.
SCAN_PAGE = 500
SCAN_MAX_PAGES = 20


def _parse_ts(value: Any) -> int:
    return parse_ts(value)  # the readings' parser (RFC 3339 or epoch ms); a note may be dated ahead


def _parse_optional_ts(value: Any) -> int | None:
    return None if value is None or value == "" else _parse_ts(value)


Ts = Annotated[int, BeforeValidator(_parse_ts), WithJsonSchema(SENSOR_TIME_SCHEMA)]
OptionalTs = Annotated[int | None, BeforeValidator(_parse_optional_ts), WithJsonSchema(SENSOR_TIME_SCHEMA)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TAG)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]
Author = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_AUTHOR)]


class AnnotationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Slug
    metric: Slug | None = None
    ts: Ts = Field(default_factory=now_ms)
    ts_end: OptionalTs = None
    text: Text
    tags: Tags = Field(default_factory=list)
    author: Author | None = Field(None, description=AUTHOR_NOTE)


class AnnotationUpdate(BaseModel):
    """A partial update: fields present replace the stored ones, absent ones stay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # not_null: these may be left out, but not sent as null (_not_null); the JSON Schema says so.
    device: Slug | None = Field(None, json_schema_extra=not_null)  # may be sent (forms re-post it) but must not change
    metric: Slug | None = None
    ts: Ts | None = Field(None, json_schema_extra=not_null)
    ts_end: OptionalTs = None
    text: Text | None = Field(None, json_schema_extra=not_null)
    tags: Tags | None = Field(None, json_schema_extra=not_null)
    author: Author | None = Field(None, description=AUTHOR_NOTE)
    version: int | None = Field(None, ge=1)

    @field_validator("device", "ts", "text", "tags")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Defaults are not validated, so this only sees an explicit null.
        if value is None:
            raise ValueError("may not be null")
        return value


class Precondition(BaseModel):
    """The body of a delete: an optional version, and who deletes (for the revision)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int | None = Field(None, ge=1)
    author: Author | None = Field(None, description=AUTHOR_NOTE)


def authorship(actor: Actor) -> dict[str, Any]:
    return {"author": actor.name, "author_id": actor.subject, "self_declared": actor.self_declared}


def form_fields(form: dict[str, str | None], *, update: bool) -> dict[str, Any]:
    """Forms post strings: tags as ``a, b``; an empty optional field means absent (create) or clear (update)."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        if value is None or value.strip() == "":
            if update and key in CLEARABLE:
                out[key] = None
            elif key == "tags":
                out[key] = []
            continue
        out[key] = value
    if isinstance(out.get("tags"), str):
        out["tags"] = [t.strip() for t in out["tags"].split(",") if t.strip()]
    return out


def check_range(ts: int | None, ts_end: int | None) -> None:
    if ts is not None and ts_end is not None and ts_end < ts:
        raise Unprocessable([{"field": "ts_end", "error": "must not be before ts"}])


class AnnotationStore:
    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.script = VersionedScript(
            redis,
            "annotation_write",
            noun="annotation",
            event_type="annotation",
            event_key="annotation",
            fields=FIELDS,
            settings=settings,
        )

    def _keys(self, annotation_id: str) -> list[str]:
        return [
            self.keys.annotation(annotation_id),
            self.keys.annotation_revisions(annotation_id),
            self.keys.events,
            self.keys.annotations_by_ts,
        ]

    async def create(self, data: AnnotationCreate, actor: Actor = NOBODY) -> Written:
        """A new annotation by ``actor`` (the caller: a body's ``author`` is not read here)."""
        check_range(data.ts, data.ts_end)
        annotation_id = new_id()
        sets = data.model_dump(exclude_none=True, exclude=set(AUTHORSHIP)) | authorship(actor)
        return await self.script.write("create", annotation_id, self._keys(annotation_id), sets=sets, actor=actor)

    async def update(
        self, annotation_id: str, patch: AnnotationUpdate, expected: int | None, actor: Actor = NOBODY
    ) -> Written:
        check_range(patch.ts, patch.ts_end)
        given = patch.model_dump(exclude_unset=True, exclude={"version", "device", *AUTHORSHIP})
        immutable = {"device": patch.device} if patch.device is not None else {}
        return await self.script.update(
            annotation_id,
            self._keys(annotation_id),
            given,
            CLEARABLE,
            expected=expected,
            immutable=immutable,
            actor=actor,
            also_sets=authorship(actor),
        )

    async def delete(self, annotation_id: str, expected: int | None, actor: Actor = NOBODY) -> Written:
        return await self.script.write(
            "delete", annotation_id, self._keys(annotation_id), expected=expected, actor=actor
        )

    async def get(self, annotation_id: str) -> dict[str, Any] | None:
        """The annotation, or its tombstone (``deleted: true``), or None."""
        raw = await self.redis.hget(self.keys.annotation(annotation_id), "json")
        return orjson.loads(raw) if raw else None

    async def revisions(self, annotation_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(r) for r in await self.redis.lrange(self.keys.annotation_revisions(annotation_id), 0, -1)]

    async def search(
        self,
        *,
        device: str | None = None,
        metric: str | None = None,
        start: int | None = None,
        end: int | None = None,
        tag: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Live annotations overlapping [start, end], newest ts first, filtered."""
        found: list[dict[str, Any]] = []
        top: str = "+inf" if end is None else str(end)
        for page in range(SCAN_MAX_PAGES):
            found_ids = await self.redis.zrevrangebyscore(
                self.keys.annotations_by_ts, top, "-inf", start=page * SCAN_PAGE, num=SCAN_PAGE
            )
            ids = [i.decode() if isinstance(i, bytes) else str(i) for i in found_ids]
            if not ids:
                break
            async with self.redis.pipeline(transaction=False) as pipe:
                for annotation_id in ids:
                    pipe.hget(self.keys.annotation(annotation_id), "json")
                docs = await pipe.execute()
            for raw in docs:
                if not raw:
                    continue  # deleted between the two reads
                doc = orjson.loads(raw)
                if _matches(doc, device, metric, start, tag):
                    found.append(doc)
                    if len(found) >= limit:
                        return found
            if len(ids) < SCAN_PAGE:
                break
        return found


def _matches(doc: dict[str, Any], device: str | None, metric: str | None, start: int | None, tag: str | None) -> bool:
    if device is not None and doc["device"] != device:
        return False
    if metric is not None and doc.get("metric") != metric:
        return False
    if start is not None and (doc.get("ts_end") or doc["ts"]) < start:
        return False
    return tag is None or tag in doc.get("tags", [])

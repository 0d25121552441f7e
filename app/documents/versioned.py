"""Versioned documents: where the version check lives, seen from Python.

Annotations and alert rules are both documents that several people edit. A
write that names the version it was based on (``version`` in the body, or
``If-Match``) is applied only if that is still the stored version, else 409
with what is stored now; a write that names none is last-write-wins. The
check and the write are one Lua run (``scripts/versioned.lua``, prepended to
each document's own script): Python never reads a version and then writes.

This module turns HTTP preconditions into an expected version, encodes the
fields for the script, and maps the script's answer to a result or an error.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from app.errors import ApiError, BadRequest, Conflict, Gone, NotFound, Unprocessable
from app.settings import Settings
from app.storage import lua as scripts
from app.validation import now_ms

Mode = Literal["create", "update", "delete"]

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ETAG = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')


def new_id() -> str:
    return secrets.token_urlsafe(12)


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(value: str | None) -> int | None:
    """``"3"``, ``W/"3"`` or ``3`` -> 3; absent or ``*`` -> None (no precondition)."""
    if value is None or value.strip() in ("", "*"):
        return None
    match = _ETAG.match(value.strip())
    if match is None:
        raise BadRequest(
            'If-Match must be one version, as "<version>" (W/ and bare numbers accepted)', code="bad_if_match"
        )
    return int(match.group(1))


def expected_version(body_version: int | None, if_match: str | None) -> int | None:
    """The precondition from the body's ``version`` and/or ``If-Match``; they must agree."""
    header = parse_if_match(if_match)
    if body_version is not None and header is not None and body_version != header:
        raise BadRequest(
            f"version {body_version} in the body and If-Match {header} disagree", code="conflicting_preconditions"
        )
    return body_version if body_version is not None else header


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a write, as the revision and the event record it (``by``, ``by_id``, ``self_declared``).

    Always the caller's identity (``Identity.actor``), never a request body;
    only with authentication off is ``name`` what the person typed, and then
    ``self_declared`` says so.
    """

    name: str | None = None
    subject: str | None = None
    self_declared: bool = False

    def members(self) -> bytes:
        """A JSON object of the revision's and the event's ``by`` members (spliced in by versioned.lua)."""
        return orjson.dumps({"by": self.name, "by_id": self.subject, "self_declared": self.self_declared})


NOBODY = Actor()


@dataclass(frozen=True, slots=True)
class Written:
    """An accepted write: the document as stored now and its event's id."""

    doc: dict[str, Any]
    event_id: str

    @property
    def version(self) -> int:
        return int(self.doc["version"])


class VersionedScript:
    """One document type's write script: ``versioned.lua`` + its own side effects."""

    def __init__(
        self,
        redis: Redis,
        script: str,
        *,
        noun: str,
        event_type: str,
        event_key: str,
        fields: Sequence[str],
        settings: Settings,
    ) -> None:
        self.script: AsyncScript = scripts.load(redis, "versioned", script)
        self.noun = noun
        self.event_type = event_type
        self.event_key = event_key  # the document's key in the event data
        self.fields = ",".join(fields)
        # The limits every document type shares: the event log's length, how long a tombstone stays, revisions kept.
        self.log_maxlen = settings.event_log_maxlen
        self.tombstone_ttl_ms = int(settings.tombstone_ttl * 1000)
        self.revisions_max = settings.revisions_max

    async def write(
        self,
        mode: Mode,
        doc_id: str,
        keys: Sequence[str],
        *,
        expected: int | None = None,
        sets: Mapping[str, Any] | None = None,
        immutable: Mapping[str, Any] | None = None,
        clears: Sequence[str] = (),
        actor: Actor = NOBODY,
    ) -> Written:
        sets = sets or {}
        immutable = immutable or {}
        args: list[Any] = [
            mode,
            "" if expected is None else expected,
            now_ms(),
            orjson.dumps(doc_id),
            self.log_maxlen,
            actor.members(),
            self.tombstone_ttl_ms,
            self.revisions_max,
            self.fields,
            self.event_type,
            self.event_key,
            len(sets),
        ]
        for name, value in sets.items():
            args += [name, orjson.dumps(value)]
        args.append(len(immutable))
        for name, value in immutable.items():
            args += [name, orjson.dumps(value)]
        args.append(len(clears))
        args += list(clears)
        args.append(doc_id)
        status, doc, event_id, field = await self.script(keys=list(keys), args=args)
        status = status.decode()
        current = orjson.loads(doc) if doc else None
        if status == "ok":
            assert current is not None
            return Written(current, event_id.decode())
        raise self._error(status, doc_id, current, field.decode())

    async def update(
        self,
        doc_id: str,
        keys: Sequence[str],
        given: Mapping[str, Any],
        clearable: Collection[str],
        *,
        expected: int | None,
        immutable: Mapping[str, Any],
        actor: Actor,
        also_sets: Mapping[str, Any] | None = None,
    ) -> Written:
        """An update from a patch's given fields: a value sets it, a null clears it (if ``clearable``, else is
        ignored); ``also_sets`` are set as well (the authorship an annotation records)."""
        sets = {k: v for k, v in given.items() if v is not None} | dict(also_sets or {})
        clears = [k for k, v in given.items() if v is None and k in clearable]
        return await self.write(
            "update", doc_id, keys, expected=expected, sets=sets, immutable=immutable, clears=clears, actor=actor
        )

    def _error(self, status: str, doc_id: str, current: dict[str, Any] | None, field: str) -> ApiError:
        noun = self.noun.replace("_", " ")
        if status == "missing":
            return NotFound(f"no {noun} {doc_id!r}")
        if status == "gone":
            return Gone(f"{noun} {doc_id!r} was deleted", body={"current": current})
        if status == "conflict":
            assert current is not None
            return Conflict(
                f"{noun} {doc_id!r} is at version {current['version']}: your write was based on an older one",
                body={"current": current},
                headers={"ETag": etag(int(current["version"]))},
            )
        if status == "immutable":
            return Unprocessable([{"field": field, "error": f"cannot be changed on an existing {noun}"}])
        return Conflict(f"{noun} {doc_id!r} already exists", code="exists")


def check_id(doc_id: str, noun: str) -> str:
    """Ids are server-made tokens; anything else cannot exist (404, not a 500 or a key injection)."""
    if not ID_PATTERN.match(doc_id):
        raise NotFound(f"no {noun} {doc_id[:70]!r}")
    return doc_id

"""Shared pieces of the versioned-document routes (annotations, alert rules)."""

from __future__ import annotations

from typing import Any, Protocol

from quart import Response, request

from app.auth.guard import current_identity
from app.documents.annotations import Precondition
from app.documents.versioned import check_id, etag, expected_version
from app.errors import Gone, NotFound
from app.validation import parse_model
from app.web.bodies import optional_body
from app.web.responses import json_response


class DocumentStore(Protocol):
    async def get(self, doc_id: str) -> dict[str, Any] | None: ...

    async def revisions(self, doc_id: str) -> list[dict[str, Any]]: ...


async def visible_document(store: DocumentStore, doc_id: str, noun: str) -> dict[str, Any] | None:
    """The stored document (tombstones too), or None; 404 when the caller's scope hides its device.

    A document's device never changes, so checking it before a write cannot race the write.
    """
    doc = await store.get(check_id(doc_id, noun))
    if doc is not None and not current_identity().sees_device(str(doc["device"])):
        raise NotFound(f"no {noun} {doc_id!r}")
    return doc


async def live_document(store: DocumentStore, doc_id: str, noun: str) -> dict[str, Any]:
    """The document, or 404 (never existed, or out of scope) / 410 (deleted; the tombstone is in the body)."""
    doc = await visible_document(store, doc_id, noun)
    if doc is None:
        raise NotFound(f"no {noun} {doc_id!r}")
    if doc["deleted"]:
        raise Gone(f"{noun} {doc_id!r} was deleted", body={"current": doc})
    return doc


async def revisions_response(store: DocumentStore, doc_id: str, noun: str) -> Response:
    if await visible_document(store, doc_id, noun) is None:
        raise NotFound(f"no {noun} {doc_id!r}")
    return json_response({"revisions": await store.revisions(doc_id)})


def doc_response(doc: dict[str, Any], status: int = 200, location: str | None = None) -> Response:
    """A document with its ``ETag`` (the version), the precondition for the next write."""
    headers = {"ETag": etag(int(doc["version"])), "Cache-Control": "no-store"}
    if location is not None:
        headers["Location"] = location
    return json_response(doc, status, headers)


async def delete_precondition() -> tuple[str | None, int | None]:
    """A delete's (author, expected version), from an optional body and/or If-Match."""
    body, _ = await optional_body()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if v != ""}  # empty form fields mean absent
    pre = parse_model(Precondition, body)
    return pre.author, expected_version(pre.version, request.headers.get("If-Match"))

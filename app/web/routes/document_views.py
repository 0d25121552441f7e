"""Shared pieces of the versioned-document routes (annotations, alert rules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel
from quart import Blueprint, Response, request

from app.auth.guard import current_identity
from app.documents.annotations import Precondition
from app.documents.versioned import Actor, Written, check_id, etag, expected_version
from app.errors import Gone, NotFound
from app.validation import parse_model
from app.web.bodies import json_or_form, optional_body
from app.web.responses import json_response
from app.web.routing import WRITE_ERRORS, Param, also, route

if TYPE_CHECKING:
    from app.auth.tokens import Role

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)
# A document's form-to-body mapping (annotations.form_fields, alert_rules.rule_form_fields).
FormFields = Callable[..., dict[str, Any]]


class DocumentStore(Protocol):
    async def get(self, doc_id: str) -> dict[str, Any] | None: ...

    async def revisions(self, doc_id: str) -> list[dict[str, Any]]: ...

    async def delete(self, doc_id: str, expected: int | None, actor: Actor, /) -> Written: ...


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


async def document_body(model: type[M], form_fields: FormFields, *, update: bool) -> tuple[dict[str, Any], M]:
    """A create's or update's body, JSON or the editor's form, as it came and as ``model`` (422 if it does not fit)."""
    body, is_form = await json_or_form()
    if is_form:
        body = form_fields(body, update=update)
        if not update:
            body.pop("version", None)  # an empty editor posts its (empty) version field
    return body, parse_model(model, body)


def if_match(body_version: int | None) -> int | None:
    """The write's expected version: the body's ``version`` and/or the request's ``If-Match``."""
    return expected_version(body_version, request.headers.get("If-Match"))


async def delete_document(store: DocumentStore, doc_id: str, noun: str) -> Written:
    """A delete on the precondition of its optional body and/or If-Match (404 when out of the caller's scope)."""
    await visible_document(store, doc_id, noun)
    author, expected = await delete_precondition()
    return await store.delete(doc_id, expected, current_identity().actor(author))


def delete_routes(
    bp: Blueprint,
    rule: str,
    *,
    access: frozenset[Role],
    summary: str,
    tag: str,
    description: str,
    params: tuple[Param, ...],
    htmx: bool = False,
) -> Callable[[F], F]:
    """A document's delete at ``POST <rule>/delete`` (forms, htmx) and ``DELETE <rule>``: one endpoint, two
    operations documented alike (the body is an optional Precondition)."""

    def operation(register: Callable[..., Callable[[F], F]], method: str, path: str, **more: Any) -> Callable[[F], F]:
        return register(
            bp,
            method,
            path,
            summary=summary,
            tag=tag,
            description=description,
            params=params,
            body="Precondition",
            body_required=False,
            htmx=htmx,
            errors=WRITE_ERRORS,
            **more,
        )

    def decorator(func: F) -> F:
        # also() below route(), as the handlers had it: the POST operation stays first in the document.
        return operation(route, "POST", f"{rule}/delete", access=access)(operation(also, "DELETE", rule)(func))

    return decorator


async def delete_precondition() -> tuple[str | None, int | None]:
    """A delete's (author, expected version), from an optional body and/or If-Match."""
    body, _ = await optional_body()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if v != ""}  # empty form fields mean absent
    pre = parse_model(Precondition, body)
    return pre.author, if_match(pre.version)

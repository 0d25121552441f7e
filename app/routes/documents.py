"""Shared pieces of the versioned-document routes (annotations, alert rules)."""

from __future__ import annotations

import re
from typing import Any

import orjson
from quart import Response, request

from ..bodies import json_or_form
from ..errors import BadRequest
from ..readings import SLUG_PATTERN
from ..versioned import etag


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def doc_response(doc: dict[str, Any], status: int = 200, location: str | None = None) -> Response:
    """A document with its ``ETag`` (the version), the precondition for the next write."""
    headers = {"ETag": etag(int(doc["version"])), "Cache-Control": "no-store"}
    if location is not None:
        headers["Location"] = location
    return json_response(doc, status, headers)


async def optional_body() -> tuple[Any, bool]:
    """Deletes may carry no body at all (curl -X DELETE, an htmx button)."""
    if not request.content_length and not request.mimetype:
        return {}, False
    if request.mimetype in ("application/json", "") and request.content_length == 0:
        return {}, False
    return await json_or_form()


def slug_arg(name: str) -> str | None:
    value = request.args.get(name) or None
    if value is not None and not re.match(SLUG_PATTERN, value):
        raise BadRequest(f"query parameter {name!r} must be a slug ([A-Za-z0-9_.-], up to 64)", code="bad_query")
    return value

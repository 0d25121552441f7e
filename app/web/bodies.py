"""Request bodies and query parameters, parsed once with clear 4xx errors.

JSON everywhere on ``/api``; form-encoded bodies are accepted on every POST
as well, because htmx forms post forms.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from quart import request

from app.errors import BadRequest, UnsupportedMediaType
from app.events.topics import MAX_STARS_PER_PATTERN, TopicFilter
from app.validation import SLUG_PATTERN

MAX_TOPIC_PATTERNS = 64
MAX_TOPIC_LENGTH = 200

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or mimetype.endswith("+json")


def parse_json(raw: bytes | str) -> Any:
    """A JSON request body, or a 400 saying what is wrong with it."""
    if not raw:
        raise BadRequest("empty body: expected JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}", code="malformed_json") from None


async def json_or_form() -> tuple[Any, bool]:
    """The body as parsed JSON, or as a flat dict from a form. Second item: was it a form."""
    mimetype = request.mimetype
    if is_json(mimetype):
        return parse_json(await request.get_data(as_text=False)), False
    if mimetype in FORM_TYPES:
        form = await request.form
        return {key: form.get(key) for key in form}, True
    raise UnsupportedMediaType(f"unsupported Content-Type {mimetype or '(none)'!r}: send application/json or a form")


def topic_filter(value: str | None) -> TopicFilter:
    patterns = [p.strip() for p in (value or "").split(",") if p.strip()]
    if len(patterns) > MAX_TOPIC_PATTERNS:
        raise BadRequest(f"too many topic patterns: at most {MAX_TOPIC_PATTERNS}", code="bad_topics")
    for pattern in patterns:
        if len(pattern) > MAX_TOPIC_LENGTH or any(ch in pattern for ch in "\r\n\0"):
            raise BadRequest(f"bad topic pattern {pattern[:40]!r}", code="bad_topics")
        if pattern.count("*") > MAX_STARS_PER_PATTERN:
            raise BadRequest(
                f"topic pattern {pattern[:40]!r} has more than {MAX_STARS_PER_PATTERN} '*' wildcards", code="bad_topics"
            )
    return TopicFilter(patterns)


async def optional_body() -> tuple[Any, bool]:
    """A body that may be absent altogether (curl -X DELETE, an htmx button): ``{}`` then."""
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


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    return _number_arg(name, default, lo, hi, int, "an integer")


def float_arg(name: str, default: float, lo: float, hi: float) -> float:
    return _number_arg(name, default, lo, hi, float, "a number")


N = TypeVar("N", int, float)


def _number_arg(name: str, default: N, lo: N, hi: N, parse: Callable[[str], N], kind: str) -> N:
    """A query parameter as a number in [lo, hi]; absent or empty: ``default``; else a 400 naming it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be {kind}", code="bad_query") from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name!r} must be between {lo} and {hi}", code="bad_query")
    return value

"""Shared validation: slugs, sensor times, one-line text, and pydantic errors as 422s.

Every store and route that checks input uses these, so the same field gets
the same rule and the same message everywhere (a device name in a reading,
an annotation, an alert rule or a token's device list). A body that fails
becomes ``Unprocessable`` with ``[{"field": "3.value", "error": "..."}]``.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, StringConstraints, ValidationError

from app.errors import Unprocessable

# Device and metric names, tag keys.
SLUG_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]

# Epoch ms between 2000-01-01 and 2200-01-01: catches seconds sent as ms.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 7_258_118_400_000

M = TypeVar("M", bound=BaseModel)


def now_ms() -> int:
    return int(time.time() * 1000)


def shaped(pattern: str, message: str) -> AfterValidator:
    """A regex check whose error says what is expected, not the regex."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def not_bool(value: Any) -> Any:
    """For number fields: JSON ``true`` is not 1."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def parse_ts(value: Any) -> int:
    """A sensor time: RFC 3339 with a timezone, or Unix epoch ms; absent means now."""
    if value is None or value == "":
        return now_ms()
    if isinstance(value, bool):
        raise ValueError("must be RFC 3339 or Unix epoch milliseconds")
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lstrip("-").isdigit():
            value = int(stripped)
        else:
            try:
                parsed = datetime.fromisoformat(stripped)
            except ValueError:
                raise ValueError("must be RFC 3339 (e.g. 2026-11-22T06:00:00Z) or Unix epoch milliseconds") from None
            if parsed.tzinfo is None:
                raise ValueError("RFC 3339 time needs a timezone (Z or +hh:mm)")
            value = int(parsed.timestamp() * 1000)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("epoch milliseconds must be a whole number")
        value = int(value)
    if not isinstance(value, int):
        raise ValueError("must be RFC 3339 or Unix epoch milliseconds")
    if not MIN_TS_MS <= value <= MAX_TS_MS:
        raise ValueError("out of range: Unix epoch milliseconds between 2000 and 2200 expected")
    return value


def validation_detail(exc: ValidationError, *, strip_index: bool = False) -> list[dict[str, Any]]:
    """pydantic's errors as ``[{"field": "3.value", "error": "..."}]``."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = list(err["loc"])
        if strip_index and loc and isinstance(loc[0], int):
            loc = loc[1:]
        out.append({"field": ".".join(str(p) for p in loc) or "body", "error": err["msg"]})
    return out


def parse_model(model: type[M], body: Any) -> M:
    """A request body (a JSON object or a form's fields) as ``model``, or a 422 naming each bad field."""
    if not isinstance(body, dict):
        raise Unprocessable("body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise Unprocessable(validation_detail(exc)) from None

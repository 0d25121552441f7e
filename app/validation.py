"""Shared validation: slugs, sensor times, one-line text, and pydantic errors as 422s.

Every store and route that checks input uses these, so the same field gets
the same rule and the same message everywhere (a device name in a reading,
an annotation, an alert rule or a token's device list). A body that fails
becomes ``Unprocessable`` with ``[{"field": "3.value", "error": "..."}]``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, GetJsonSchemaHandler, StringConstraints, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app.errors import Unprocessable

# Device and metric names, tag keys.
SLUG_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
# White space as str.strip() and str.isspace() see it, as a regex class (Python and JSON Schema alike):
# a blank form field, user name or state is one made only of these.
SPACE_CLASS = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
BLANK_PATTERN = rf"^[{SPACE_CLASS}]*$"


def not_null(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of a field that may be left out but not sent as null: its JSON Schema says so.

    (``X | None = None`` with a validator refusing an explicit null; the validation is unchanged.)
    """
    if isinstance(schema.get("anyOf"), list):
        kept = [branch for branch in schema.pop("anyOf") if branch.get("type") != "null"]
        if len(kept) == 1:
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept
    if "default" in schema and schema["default"] is None:
        del schema["default"]


Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]

# Epoch ms between 2000-01-01 and 2200-01-01: catches seconds sent as ms.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 7_258_118_400_000
# What parse_ts takes, as JSON Schema (for the API description): epoch ms in range, or RFC 3339 with a
# timezone (the pattern keeps to days every month has, and to years whose every offset stays in range);
# null or empty means now (or, for an end, none).
RFC3339_PATTERN = (
    r"^2(?:00[1-9]|0[1-9][0-9]|1[0-9]{2})-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
SENSOR_TIME_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": MIN_TS_MS, "maximum": MAX_TS_MS, "description": "Unix epoch ms"},
        {"type": "string", "pattern": RFC3339_PATTERN, "description": "RFC 3339 with a timezone"},
        {"type": "null"},
        {"type": "string", "maxLength": 0},
    ]
}

M = TypeVar("M", bound=BaseModel)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Shaped(AfterValidator):
    """An ``AfterValidator`` that also puts its pattern in the JSON Schema (the API description)."""

    pattern: str = ""

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        out["pattern"] = self.pattern
        return out


def shaped(pattern: str, message: str) -> AfterValidator:
    """A regex check whose error says what is expected, not the regex."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return Shaped(check, pattern)


def not_bool(value: Any) -> Any:
    """For number fields: JSON ``true`` is not 1."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


# RFC 3339's date-time (section 5.6): either case of T and Z (and a space for
# T, as its note allows), any number of fraction digits, a leap second.
RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))")
RFC3339_MESSAGE = "must be RFC 3339 (e.g. 2026-11-22T06:00:00Z) or Unix epoch milliseconds"


def _rfc3339_ms(text: str) -> int | None:
    """Epoch ms of an RFC 3339 date-time; None if ``text`` is not one (ValueError if it names no real time)."""
    match = RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zulu, sign, off_h, off_m = match.groups()[6:]
    if zulu:
        tz = UTC
    else:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError("RFC 3339 offset out of range")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    # A leap second (:60) is the instant after :59.
    leap = second == 60
    try:
        parsed = datetime(year, month, day, hour, minute, 59 if leap else second, tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"not a real date and time: {exc}") from None
    ms = int(parsed.timestamp()) * 1000 + (1000 if leap else 0)
    if fraction:
        ms += int(fraction[:3].ljust(3, "0"))
    return ms


def parse_ts(value: Any) -> int:
    """A sensor time: RFC 3339 with a timezone, or Unix epoch ms; absent means now.

    RFC 3339 as the RFC has it (``2026-11-22t06:00:00z``, ``...T23:59:60Z``,
    nine fraction digits), and other ISO 8601 forms with an offset that
    Python's ``fromisoformat`` reads.
    """
    if value is None or value == "":
        return now_ms()
    if isinstance(value, bool):
        raise ValueError("must be RFC 3339 or Unix epoch milliseconds")
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lstrip("-").isdigit():
            value = int(stripped)
        elif (rfc3339 := _rfc3339_ms(stripped)) is not None:
            value = rfc3339
        else:
            try:
                parsed = datetime.fromisoformat(stripped)
            except ValueError:
                raise ValueError(RFC3339_MESSAGE) from None
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

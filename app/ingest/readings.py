"""A reading, as sensors send it, and how a request body becomes readings.

``ts`` is the sensor's time: an RFC 3339 string or Unix epoch milliseconds,
server time when absent. Values must be finite. Unknown fields are refused so
a typo (``vaule``) is an error, not a silently dropped reading.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from app.errors import Unprocessable

SLUG_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]

# Epoch ms between 2000-01-01 and 2200-01-01: catches seconds sent as ms.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 7_258_118_400_000


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def now_ms() -> int:
    return int(time.time() * 1000)


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Slug
    metric: Slug
    value: Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
    ts: int = Field(default_factory=now_ms)
    unit: Annotated[str, StringConstraints(max_length=16)] | None = None
    tags: Annotated[dict[Slug, Annotated[str, StringConstraints(max_length=128)]], Field(max_length=16)] = Field(
        default_factory=dict
    )

    @field_validator("ts", mode="before")
    @classmethod
    def _parse_ts(cls, value: Any) -> int:
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
                    raise ValueError(
                        "must be RFC 3339 (e.g. 2026-11-22T06:00:00Z) or Unix epoch milliseconds"
                    ) from None
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

    @property
    def series(self) -> str:
        return f"{self.device}/{self.metric}"


_batch = TypeAdapter(list[Reading])


def parse_readings(body: Any, *, max_batch: int) -> list[Reading]:
    """One reading (an object) or a batch (a list): all valid, or an error naming each bad field."""
    if isinstance(body, dict):
        items: list[Any] = [body]
        single = True
    elif isinstance(body, list):
        items = body
        single = False
    else:
        raise Unprocessable("body must be a reading object or a list of readings")
    if not items:
        raise Unprocessable("empty batch: send at least one reading")
    if len(items) > max_batch:
        raise Unprocessable(f"batch too large: {len(items)} readings, at most {max_batch}", code="batch_too_large")
    try:
        return _batch.validate_python(items)
    except ValidationError as exc:
        raise Unprocessable(validation_detail(exc, strip_index=single)) from None


def validation_detail(exc: ValidationError, *, strip_index: bool = False) -> list[dict[str, Any]]:
    """pydantic's errors as ``[{"field": "3.value", "error": "..."}]``."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = list(err["loc"])
        if strip_index and loc and isinstance(loc[0], int):
            loc = loc[1:]
        out.append({"field": ".".join(str(p) for p in loc) or "body", "error": err["msg"]})
    return out

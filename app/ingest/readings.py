"""A reading, as sensors send it, and how a request body becomes readings.

``ts`` is the sensor's time: an RFC 3339 string or Unix epoch milliseconds,
server time when absent, and no further ahead of the server's clock than
``LIVEDASH_MAX_FUTURE`` (given to validation as the context
``{"max_future_ms": …}``; a day without it). Values must be finite. Unknown fields are refused so
a typo (``vaule``) is an error, not a silently dropped reading.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from app.errors import Unprocessable
from app.storage.keyspace import series_id
from app.validation import SENSOR_TIME_SCHEMA, Slug, not_bool, now_ms, parse_ts, validation_detail

READING_TIME_SCHEMA = {
    **SENSOR_TIME_SCHEMA,
    "description": "The sensor's time; server time when absent. At most LIVEDASH_MAX_FUTURE (a day by default) "
    "ahead of the server's clock: a reading dated later is refused (422, or its line named in a 400).",
}


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Slug
    metric: Slug
    value: Annotated[float, BeforeValidator(not_bool), Field(allow_inf_nan=False)]
    ts: Annotated[int, WithJsonSchema(READING_TIME_SCHEMA)] = Field(default_factory=now_ms)
    unit: Annotated[str, StringConstraints(max_length=16)] | None = None
    tags: Annotated[dict[Slug, Annotated[str, StringConstraints(max_length=128)]], Field(max_length=16)] = Field(
        default_factory=dict
    )

    @field_validator("ts", mode="before")
    @classmethod
    def _parse_ts(cls, value: Any, info: ValidationInfo) -> int:
        ts = parse_ts(value)
        ahead = max_future_ms(info.context)
        if ts > now_ms() + ahead:
            raise ValueError(
                f"{(ts - now_ms()) / 3_600_000:.1f} h ahead of the server's clock, at most {ahead / 3_600_000:g} h"
                " (LIVEDASH_MAX_FUTURE): is the sensor's clock or time zone wrong?"
            )
        return ts

    @property
    def series(self) -> str:
        """The canonical series id: device, metric and every tag (``app.storage.keyspace.series_id``)."""
        return series_id(self.device, self.metric, self.tags)


DEFAULT_MAX_FUTURE_MS = 86_400_000


def max_future_ms(context: Any) -> int:
    if isinstance(context, dict) and "max_future_ms" in context:
        return int(context["max_future_ms"])
    return DEFAULT_MAX_FUTURE_MS


def validation_context(max_future_s: float) -> dict[str, int]:
    """The context Reading validation takes from the settings."""
    return {"max_future_ms": int(max_future_s * 1000)}


_batch = TypeAdapter(list[Reading])


def parse_readings(body: Any, *, max_batch: int, max_future_s: float = DEFAULT_MAX_FUTURE_MS / 1000) -> list[Reading]:
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
        return _batch.validate_python(items, context=validation_context(max_future_s))
    except ValidationError as exc:
        raise Unprocessable(validation_detail(exc, strip_index=single)) from None

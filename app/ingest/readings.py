"""A reading, as sensors send it, and how a request body becomes readings.

``ts`` is the sensor's time: an RFC 3339 string or Unix epoch milliseconds,
server time when absent. Values must be finite. Unknown fields are refused so
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
    WithJsonSchema,
    field_validator,
)

from app.errors import Unprocessable
from app.storage.keyspace import series_id
from app.validation import SENSOR_TIME_SCHEMA, Slug, not_bool, now_ms, parse_ts, validation_detail


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Slug
    metric: Slug
    value: Annotated[float, BeforeValidator(not_bool), Field(allow_inf_nan=False)]
    ts: Annotated[int, WithJsonSchema(SENSOR_TIME_SCHEMA)] = Field(default_factory=now_ms)
    unit: Annotated[str, StringConstraints(max_length=16)] | None = None
    tags: Annotated[dict[Slug, Annotated[str, StringConstraints(max_length=128)]], Field(max_length=16)] = Field(
        default_factory=dict
    )

    @field_validator("ts", mode="before")
    @classmethod
    def _parse_ts(cls, value: Any) -> int:
        return parse_ts(value)

    @property
    def series(self) -> str:
        """The canonical series id: device, metric and every tag (``app.storage.keyspace.series_id``)."""
        return series_id(self.device, self.metric, self.tags)


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

"""InfluxDB line protocol (what Telegraf sends) parsed into readings. No I/O.

    measurement[,tag=value...] field=value[,field=value...] [timestamp]

Mapping (documented in docs/ingest.md):

- the ``device`` tag (``LIVEDASH_LINE_DEVICE_TAG``; Telegraf's is ``host``) is
  the device; a line without it is an error;
- each numeric field is one reading: a field named ``value`` keeps the
  measurement as the metric, any other field ``f`` gives ``measurement.f``
  (``cpu usage_idle=97`` → ``cpu.usage_idle``). The name does not depend on how
  many fields a line happens to carry, so a series keeps one name;
- the other tags become the reading's tags;
- string and boolean fields are skipped (counted, never an error): Telegraf
  mixes them into otherwise numeric lines, e.g. ``http_response result="ok"``;
- the timestamp is read in ``precision`` (ns by default, like InfluxDB) and
  stored in milliseconds; absent, the server's time.

Escapes: ``\\,`` ``\\ `` (and ``\\=`` in tag and field keys) in names, ``\\"``
and ``\\\\`` inside string field values; ``#`` starts a comment line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app.ingest.readings import Reading
from app.validation import now_ms, validation_detail

PRECISIONS: dict[str, tuple[int, int]] = {
    # precision: (multiply, divide) to get milliseconds
    "ns": (1, 1_000_000),
    "n": (1, 1_000_000),
    "us": (1, 1_000),
    "u": (1, 1_000),
    "µs": (1, 1_000),
    "ms": (1, 1),
    "s": (1_000, 1),
}
MAX_ERRORS = 20

_FLOAT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_INT = re.compile(r"^[+-]?\d+[iu]$")
_BOOLS = {"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"}
_TIMESTAMP = re.compile(r"^-?\d{1,19}$")


class LineError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass
class Point:
    line: int
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | str | bool]
    timestamp: int | None


@dataclass
class Batch:
    readings: list[Reading] = field(default_factory=list)
    skipped_fields: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def _split(text: str, sep: str, *, quotes: bool) -> list[str]:
    """Split on unescaped ``sep`` (outside double quotes when ``quotes``), keeping escapes."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if quotes and ch == '"':
            in_quotes = not in_quotes
        elif ch == sep and not in_quotes:
            parts.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    if in_quotes:
        raise ValueError("unterminated string field value")
    parts.append("".join(current))
    return parts


def _unescape(text: str, specials: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in specials:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _sections(line: str) -> list[str]:
    """Measurement-and-tags, fields, optional timestamp: split on unescaped spaces.

    Quotes only count after the first section: a quote in a measurement or a
    tag is an ordinary character.
    """
    head = _split(line, " ", quotes=False)
    first = head[0]
    rest = line[len(first) + 1 :] if len(head) > 1 else ""
    return [first, *[s for s in _split(rest, " ", quotes=True) if s != ""]] if rest else [first]


def _field_value(raw: str) -> float | str | bool:
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            raise ValueError(f"bad string field value {raw[:40]!r}")
        return _unescape(raw[1:-1], '"\\')
    if raw in _BOOLS:
        return raw[0] in "tT"
    if _INT.match(raw):
        return float(int(raw[:-1]))
    if _FLOAT.match(raw):
        return float(raw)
    raise ValueError(f'bad field value {raw[:40]!r} (a number, 12i, 12u, a "string" or a boolean)')


def parse_line(text: str, number: int) -> Point:
    try:
        sections = _sections(text)
        if len(sections) < 2:
            raise ValueError("no fields: expected 'measurement[,tags] field=value [timestamp]'")
        if len(sections) > 3:
            raise ValueError("unexpected text after the timestamp (unescaped space?)")
        key_parts = _split(sections[0], ",", quotes=False)
        measurement = _unescape(key_parts[0], ", ")
        if not measurement:
            raise ValueError("empty measurement")
        tags: dict[str, str] = {}
        for pair in key_parts[1:]:
            key, value = _key_value(pair, "tag")
            tags[key] = _unescape(value, ",= ")
        fields: dict[str, float | str | bool] = {}
        for pair in _split(sections[1], ",", quotes=True):
            key, value = _key_value(pair, "field")
            fields[key] = _field_value(value)
        timestamp = None
        if len(sections) == 3:
            if not _TIMESTAMP.match(sections[2]):
                raise ValueError(f"bad timestamp {sections[2][:40]!r} (an integer in the request's precision)")
            timestamp = int(sections[2])
    except ValueError as exc:
        raise LineError(number, str(exc)) from None
    return Point(number, measurement, tags, fields, timestamp)


def _key_value(pair: str, what: str) -> tuple[str, str]:
    # Only a field's value may be quoted (and hold an "="); a tag's quote is a character.
    parts = _split(pair, "=", quotes=what == "field")
    if len(parts) != 2 or not parts[0] or parts[1] == "":
        raise ValueError(f"bad {what} {pair[:60]!r}: expected key=value")
    return _unescape(parts[0], ",= "), parts[1]


def parse(text: str) -> list[Point]:
    """Every point in ``text``; the first syntax error raises ``LineError``."""
    points = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        points.append(parse_line(line.lstrip(), number))
    return points


def to_ms(timestamp: int, precision: str) -> int:
    multiply, divide = PRECISIONS[precision]
    return timestamp * multiply // divide


def metric_name(measurement: str, field_key: str) -> str:
    return measurement if field_key == "value" else f"{measurement}.{field_key}"


def to_readings(points: list[Point], *, device_tag: str, precision: str) -> Batch:
    """Readings for every numeric field; every problem is collected (up to MAX_ERRORS), nothing half-done."""
    batch = Batch()
    server_ts = now_ms()
    for point in points:
        tags = dict(point.tags)
        device = tags.pop(device_tag, None)
        if device is None:
            batch.errors.append({"line": point.line, "field": "tags", "error": f"missing the {device_tag!r} tag"})
            continue
        ts = server_ts if point.timestamp is None else to_ms(point.timestamp, precision)
        for key, value in point.fields.items():
            if isinstance(value, bool | str):
                batch.skipped_fields += 1
                continue
            candidate = {"device": device, "metric": metric_name(point.measurement, key), "value": value, "ts": ts}
            if tags:
                candidate["tags"] = tags
            try:
                batch.readings.append(Reading.model_validate(candidate))
            except ValidationError as exc:
                for err in validation_detail(exc):
                    batch.errors.append({"line": point.line, "field": err["field"], "error": err["error"]})
        if len(batch.errors) >= MAX_ERRORS:
            break
    return batch

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

Escapes: ``\\,`` ``\\ `` (and ``\\=`` in tag keys, tag values and field keys)
in names, ``\\"`` and ``\\\\`` inside string field values; any other backslash is
itself. ``#`` starts a comment line. A string field value may hold newlines (the
line goes on to its closing quote). Refused, for that line only: a duplicate tag
key (above all a second ``device`` tag: which one would be the device?), a control
character in a name or tag, an integer outside int64 (``12i``) or uint64 (``12u``,
no sign), a float that overflows, a timestamp outside int64.

``parse_all`` keeps going past a bad line (InfluxDB's partial writes: the good
lines are stored, the bad ones named); ``parse`` stops at the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app.ingest.readings import DEFAULT_MAX_FUTURE_MS, Reading, validation_context
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
_INT = re.compile(r"^-?\d+i$")
_UINT = re.compile(r"^\d+u$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
INT64 = (-(2**63), 2**63 - 1)
UINT64_MAX = 2**64 - 1
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
    rejected_lines: set[int] = field(default_factory=set)  # every line refused (errors: only the first MAX_ERRORS)


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
        number = int(raw[:-1])
        if not INT64[0] <= number <= INT64[1]:
            raise ValueError(f"integer {raw[:40]!r} out of range (int64)")
        return float(number)
    if _UINT.match(raw):
        number = int(raw[:-1])
        if number > UINT64_MAX:
            raise ValueError(f"unsigned {raw[:40]!r} out of range (uint64)")
        return float(number)
    if raw.endswith("u") and raw[:-1].lstrip("+-").isdigit():
        raise ValueError(f"unsigned {raw[:40]!r} has a sign")
    if _FLOAT.match(raw):
        value = float(raw)
        if value in (float("inf"), float("-inf")):
            raise ValueError(f"float {raw[:40]!r} out of range")
        return value
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
        _printable(measurement, "measurement")
        tags: dict[str, str] = {}
        for pair in key_parts[1:]:
            key, value = _key_value(pair, "tag")
            if key in tags:
                raise ValueError(f"duplicate tag key {key!r}")
            tags[key] = _printable(_unescape(value, ",= "), f"tag {key!r}")
        fields: dict[str, float | str | bool] = {}
        for pair in _split(sections[1], ",", quotes=True):
            key, value = _key_value(pair, "field")
            fields[key] = _field_value(value)
        timestamp = None
        if len(sections) == 3:
            if not _TIMESTAMP.match(sections[2]):
                raise ValueError(f"bad timestamp {sections[2][:40]!r} (an integer in the request's precision)")
            timestamp = int(sections[2])
            if not INT64[0] <= timestamp <= INT64[1]:
                raise ValueError(f"timestamp {sections[2]!r} out of range (int64)")
    except ValueError as exc:
        raise LineError(number, str(exc)) from None
    return Point(number, measurement, tags, fields, timestamp)


def _key_value(pair: str, what: str) -> tuple[str, str]:
    # Only a field's value may be quoted (and hold an "="); a tag's quote is a character.
    parts = _split(pair, "=", quotes=what == "field")
    if len(parts) != 2 or not parts[0] or parts[1] == "":
        raise ValueError(f"bad {what} {pair[:60]!r}: expected key=value")
    return _printable(_unescape(parts[0], ",= "), f"{what} key"), parts[1]


def _printable(text: str, what: str) -> str:
    found = _CONTROL.search(text)
    if found:
        raise ValueError(f"control character {found.group()!r} in {what} (allowed only inside a string field value)")
    return text


def records(text: str) -> list[tuple[int, str]]:
    """``text`` cut into lines: at each newline, except inside a string field value. (line number, line).

    Quotes count only in the field section (after the first unescaped space), as
    in ``_sections``: a ``"`` in a measurement or a tag is an ordinary character.
    """
    out: list[tuple[int, str]] = []
    start, number, first = 0, 1, 1
    section, in_quotes, spaced = 0, False, True  # spaced: after a run of spaces (or at the start)
    i, end = 0, len(text)
    while i < end:
        ch = text[i]
        if ch == "\\" and i + 1 < end and text[i + 1] != "\n":
            i += 2
            spaced = False
            continue
        if ch == "\n":
            number += 1
            if not in_quotes:
                out.append((first, text[start:i]))
                start, first, section, spaced = i + 1, number, 0, True
                i += 1
                continue
        elif ch == " " and not in_quotes:
            # A run of spaces separates two sections once; leading spaces separate nothing.
            if not spaced:
                section += 1
            spaced = True
            i += 1
            continue
        elif ch == '"' and section == 1:
            in_quotes = not in_quotes
        spaced = False
        i += 1
    rest = text[start:]
    if in_quotes and "\n" in rest:
        # A quote never closed: that line ends at its first newline (and is refused), the lines after it stand.
        cut = rest.index("\n")
        out.append((first, rest[:cut]))
        out.extend((first + n, line) for n, line in records(rest[cut + 1 :]))
    elif rest:
        out.append((first, rest))
    return out


def _skipped(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def parse_all(text: str) -> tuple[list[Point], list[LineError]]:
    """Every good point in ``text`` and every bad line's error: a bad line does not stop the others."""
    points: list[Point] = []
    errors: list[LineError] = []
    for number, raw in records(text):
        line = raw.rstrip("\r")
        if _skipped(line):
            continue
        try:
            points.append(parse_line(line.lstrip(), number))
        except LineError as exc:
            errors.append(exc)
    return points, errors


def parse(text: str) -> list[Point]:
    """Every point in ``text``; the first syntax error raises ``LineError``."""
    points, errors = parse_all(text)
    if errors:
        raise errors[0]
    return points


def to_ms(timestamp: int, precision: str) -> int:
    multiply, divide = PRECISIONS[precision]
    return timestamp * multiply // divide


def metric_name(measurement: str, field_key: str) -> str:
    return measurement if field_key == "value" else f"{measurement}.{field_key}"


def to_readings(
    points: list[Point], *, device_tag: str, precision: str, max_future_s: float = DEFAULT_MAX_FUTURE_MS / 1000
) -> Batch:
    """Readings for every numeric field of every good line.

    A line is taken whole or not at all: one invalid reading refuses its line
    (named in ``errors``, up to MAX_ERRORS; every one in ``rejected_lines``),
    and the other lines go on.
    """
    batch = Batch()
    server_ts = now_ms()
    context = validation_context(max_future_s)
    for point in points:
        errors: list[dict[str, Any]] = []
        readings: list[Reading] = []
        skipped = 0
        tags = dict(point.tags)
        device = tags.pop(device_tag, None)
        if device is None:
            errors.append({"line": point.line, "field": "tags", "error": f"missing the {device_tag!r} tag"})
        else:
            ts = server_ts if point.timestamp is None else to_ms(point.timestamp, precision)
            for key, value in point.fields.items():
                if isinstance(value, bool | str):
                    skipped += 1
                    continue
                metric = metric_name(point.measurement, key)
                candidate = {"device": device, "metric": metric, "value": value, "ts": ts}
                if tags:
                    candidate["tags"] = tags
                try:
                    readings.append(Reading.model_validate(candidate, context=context))
                except ValidationError as exc:
                    for err in validation_detail(exc):
                        errors.append({"line": point.line, "field": err["field"], "error": err["error"]})
        if errors:
            batch.rejected_lines.add(point.line)
            batch.errors.extend(errors[: max(0, MAX_ERRORS - len(batch.errors))])
        else:
            batch.readings.extend(readings)
            batch.skipped_fields += skipped
    return batch

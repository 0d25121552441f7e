"""What an event is: its id, its topic, and its encodings.

An event is one entry of the Redis Stream that is the event log. Its id is the
stream id (``<ms>-<seq>``), so ids are monotonic, comparable across processes
and resumable. Each event is encoded at most once per format and the bytes are
shared by every subscriber that receives it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

import orjson

# A stream id, as Redis writes it.
EVENT_ID_RE: Final = re.compile(r"^(\d{1,20})-(\d{1,20})$")
ZERO_ID: Final = "0-0"

EventKey = tuple[int, int]
_UNPARSED: Final = object()


def parse_event_id(value: str) -> EventKey | None:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``; None if malformed."""
    match = EVENT_ID_RE.match(value)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def format_event_id(key: EventKey) -> str:
    return f"{key[0]}-{key[1]}"


class Event:
    """One entry of the event log, decoded lazily and encoded once per format."""

    __slots__ = ("_data", "_frames", "_json", "data_json", "id", "key", "topic", "type")

    def __init__(self, event_id: str, type_: str, topic: str, data_json: bytes) -> None:
        self.id = event_id
        key = parse_event_id(event_id)
        if key is None:
            raise ValueError(f"not a stream id: {event_id!r}")
        self.key: EventKey = key
        self.type = type_
        self.topic = topic
        self.data_json = data_json
        self._json: bytes | None = None
        self._data: object = _UNPARSED
        self._frames: dict[str, bytes] = {}

    @classmethod
    def from_stream(cls, event_id: bytes | str, fields: dict[bytes, bytes]) -> Event:
        eid = event_id.decode() if isinstance(event_id, bytes) else event_id
        return cls(
            eid,
            fields.get(b"type", b"").decode(),
            fields.get(b"topic", b"").decode(),
            fields.get(b"data", b"null"),
        )

    @property
    def ts(self) -> int:
        """Server time of the event, Unix ms: the stream id's time part."""
        return self.key[0]

    def json(self) -> bytes:
        """The event as ``{id, type, topic, ts, data}``, built without re-parsing data."""
        if self._json is None:
            head = orjson.dumps({"id": self.id, "type": self.type, "topic": self.topic, "ts": self.ts})
            self._json = head[:-1] + b',"data":' + self.data_json + b"}"
        return self._json

    def data(self) -> object:
        """The payload, parsed on first use only (the hot path never needs it)."""
        if self._data is _UNPARSED:
            self._data = orjson.loads(self.data_json)
        return self._data

    def frame(self, fmt: str, encoder: Callable[[Event], bytes]) -> bytes:
        """This event's wire bytes in ``fmt``, encoded on first use only."""
        cached = self._frames.get(fmt)
        if cached is None:
            cached = self._frames[fmt] = encoder(self)
        return cached

"""``livedash tail``: follow a server's stream in a terminal.

An ordinary HTTP client of ``GET /api/stream``: one readable line per event
on stdout, connection news on stderr. It remembers the last id it saw and,
when the stream ends (a deploy's ``bye``, a drop as a slow consumer, a network
hiccup), reconnects with ``Last-Event-ID``, so nothing is missed; a ``reset``
says the gap was too old to replay. The server's ``retry:`` hint sets the
reconnect delay; repeated failures back off up to ``MAX_BACKOFF``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx
import orjson

CONTROL = {"ready", "reset", "ping", "status", "bye"}
MAX_BACKOFF = 30.0
# Pings come every LIVEDASH_KEEPALIVE_INTERVAL (15 s): silence for longer than this is a dead connection.
READ_TIMEOUT = 60.0


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


def parse_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """The SSE wire format: fields until a blank line; comments ignored; data lines joined."""
    current = SseEvent()
    data: list[str] = []
    seen = False
    for line in lines:
        if line == "":
            if seen:
                current.data = "\n".join(data)
                yield current
            current, data, seen = SseEvent(), [], False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        seen = True
        if name == "data":
            data.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "retry" and value.isdigit():
            current.retry = int(value)


def _clock(ms: Any) -> str:
    try:
        return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
    except (TypeError, ValueError, OverflowError, OSError):
        return "--:--:--.---"


def describe(event: dict[str, Any]) -> str:
    """One readable line for a log event ``{id, type, topic, ts, data}``."""
    kind = str(event.get("type", "?"))
    data = event.get("data")
    data = data if isinstance(data, dict) else {}
    if kind == "metric":
        unit = f" {data['unit']}" if data.get("unit") else ""
        what = f"{data.get('device')}/{data.get('metric')} = {data.get('value')}{unit}"
        if data.get("latest") is False:
            what += "  (late)"
    elif kind == "annotation":
        what = f"{data.get('device')} note v{data.get('version')}: {str(data.get('text', ''))[:80]}"
        if data.get("deleted"):
            what += "  (deleted)"
    elif kind == "alert":
        what = f"{data.get('device')}/{data.get('metric')} {str(data.get('state', data.get('change', ''))).upper()}"
        if "value" in data:
            what += f" at {data['value']}"
    else:
        what = orjson.dumps(data).decode()[:160]
    when = _clock(data.get("ts", event.get("ts")))
    return f"{when}  {kind:<11} {event.get('topic', ''):<24} {what}  [{event.get('id', '')}]"


@dataclass
class Tail:
    url: str
    topics: str | None = None
    token: str | None = None
    last_id: str | None = None
    count: int | None = None
    raw: bool = False
    out: TextIO = field(default=sys.stdout)
    err: TextIO = field(default=sys.stderr)
    printed: int = 0
    retry_ms: int = 2_000

    def _note(self, text: str) -> None:
        print(f"-- {text}", file=self.err, flush=True)

    def run(self) -> int:
        failures = 0
        while True:
            try:
                status = self._follow()
            except httpx.HTTPError as exc:
                status = None
                self._note(f"connection problem: {exc.__class__.__name__}: {exc}")
            if self.count is not None and self.printed >= self.count:
                return 0
            if status is not None and status in (400, 401, 403, 404):
                return 2
            failures = failures + 1 if status != 200 else 0
            delay = min(self.retry_ms / 1000 * (2 ** max(0, failures - 1)), MAX_BACKOFF)
            resume = f"after {self.last_id}" if self.last_id else "from now"
            self._note(f"reconnecting in {delay:.1f}s, resuming {resume}")
            time.sleep(delay)

    def _follow(self) -> int:
        headers = {"Accept": "text/event-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        params = {"topics": self.topics} if self.topics else {}
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        with httpx.stream(
            "GET", self.url.rstrip("/") + "/api/stream", params=params, headers=headers, timeout=timeout
        ) as response:
            if response.status_code != 200:
                response.read()
                self._note(f"{response.status_code}: {response.text[:300]}")
                return response.status_code
            for sse in parse_sse(response.iter_lines()):
                if sse.retry is not None:
                    self.retry_ms = sse.retry
                if sse.id:
                    self.last_id = sse.id
                if self._show(sse):
                    return 200
        self._note("stream ended")
        return 200

    def _show(self, sse: SseEvent) -> bool:
        """Print one event; True once ``count`` log events were printed."""
        if sse.event in CONTROL:
            if sse.event == "ready":
                self._note(f"connected to {self.url} (cursor {sse.id})")
            elif sse.event == "reset":
                self._note("reset: the gap was older than the kept history; events in it are not shown")
            elif sse.event in ("status", "bye"):
                self._note(f"{sse.event}: {sse.data}")
            return False
        if self.raw:
            print(sse.data, file=self.out, flush=True)
        else:
            try:
                event = orjson.loads(sse.data)
            except orjson.JSONDecodeError:
                event = {"type": sse.event, "id": sse.id, "data": {"raw": sse.data[:160]}}
            print(describe(event if isinstance(event, dict) else {}), file=self.out, flush=True)
        self.printed += 1
        return self.count is not None and self.printed >= self.count

"""No log forging: values a client controls never break a log line or leave a raw control character.

The path, the stream's topics and ``Last-Event-ID`` (header or query) reach
the access and stream lines. A request carrying CR/LF, NUL, ESC, DEL, C1
controls or U+2028 in each of them must still give exactly one line per log
record, in both formats, with every control character escaped. Checked on
the formatted output in process, and in a real server's log file.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from quart import Quart

from app.ops.logs import JsonFormatter, RequestIdFilter, TextFormatter
from app.services import services_of

from .servers import AppServer
from .types import QuartClient
from .waiting import async_wait_until, wait_until

# Anything that may not appear raw in a log: C0 (line feeds aside, which end lines), DEL, C1, U+2028/9.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}Z [A-Z]+ ")
TEXT_FORMAT = "%(asctime)sZ %(levelname)s %(name)s: %(message)s"

FORGED = "1-0\r\nevent: pwn\r\n\r\n2026-01-01 00:00:00,000Z INFO livedash.access: request status=200"
NASTY = "\x1b[31m\x7f\x85\x9b\u2028end"  # topics refuse CR, LF and NUL themselves; a path may hold them
TOPICS = f"device/a{NASTY},device/b\tc status=200"  # a value posing as another field too
PATH = f"/api/nope\r\n2026-01-01 00:00:00,000Z INFO livedash.access: request\x00{NASTY}"


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """The app's log records, formatted as text and as JSON (what a server's handler writes)."""
    text, js = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(text), logging.StreamHandler(js)]
    handlers[0].setFormatter(TextFormatter(TEXT_FORMAT))
    handlers[1].setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("livedash.access", "livedash.stream")]
    levels = [logger.level for logger in loggers]
    for handler in handlers:
        handler.addFilter(RequestIdFilter())
    for logger in loggers:
        logger.setLevel(logging.INFO)
        for handler in handlers:
            logger.addHandler(handler)
    try:
        yield text, js
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
            for handler in handlers:
                logger.removeHandler(handler)


def lines_of(output: str) -> list[str]:
    """Lines as a log shipper cuts them: at line feeds (anything else that might cut one is a raw control)."""
    return output.rstrip("\n").split("\n") if output else []


def assert_clean_text(output: str) -> list[str]:
    lines = lines_of(output)
    assert lines, "nothing was logged"
    for line in lines:
        assert RECORD_START.match(line), f"a line that is not a record of its own: {line!r}"
        assert not RAW_CONTROL.search(line), f"a raw control character: {line!r}"
    assert "\r" not in output
    return lines


def assert_clean_json(output: str) -> list[dict[str, object]]:
    assert not RAW_CONTROL.search(output), "a raw control character in the JSON log"
    return [json.loads(line) for line in lines_of(output)]


async def stream_once(app: Quart, query: bytes, headers: dict[str, str]) -> bytes:
    """Open ``/api/stream`` on the ASGI app, read its first chunk, then end it from the server side."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.1"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/stream",
        "raw_path": b"/api/stream",
        "query_string": query,
        "root_path": "",
        # Header values are latin-1 on the wire: bytes 0x80-0x9f arrive as C1 controls.
        "headers": [(b"host", b"test")] + [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "extensions": {},
    }
    requested, never, body = asyncio.Event(), asyncio.Event(), asyncio.Event()
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if not requested.is_set():
            requested.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            body.set()

    hub = services_of(app).hub
    task = asyncio.ensure_future(app(scope, receive, send))  # type: ignore[arg-type]
    async with asyncio.timeout(10):
        await body.wait()

        async def subscribed() -> bool:
            return bool(hub.subscriptions)

        await async_wait_until(subscribed, timeout=10, what="the stream's subscription")
        for sub in list(hub.subscriptions):
            sub.close("ended")
        await task
    return chunks[0]


async def test_client_values_cannot_forge_log_lines(
    app: Quart, client: QuartClient, captured: tuple[io.StringIO, io.StringIO]
) -> None:
    text, js = captured
    # The path (an unmatched one: 404), as a server hands it over once percent-decoded.
    assert (await client.get(PATH, headers={"X-Request-ID": "forge-path"})).status_code == 404
    # A stream resumed from a forged query id, then from a header holding C1 controls.
    for rid, query, headers in (
        ("forge-query", {"last_event_id": FORGED, "topics": TOPICS}, {}),
        ("forge-header", {"topics": TOPICS}, {"Last-Event-ID": "1-0\x85\x9b\x7f\tx"}),
    ):
        first = await stream_once(app, urlencode(query).encode(), {"X-Request-ID": rid, **headers})
        assert b"event: " in first

    async def closed() -> bool:
        return text.getvalue().count("stream close") == 2 and js.getvalue().count("stream close") == 2

    await async_wait_until(closed, timeout=10, what="both streams' close lines")

    lines = assert_clean_text(text.getvalue())
    # One access line per request, one open and one close line per stream: nothing more.
    assert len([line for line in lines if "livedash.access: request " in line]) == 3, lines
    assert len([line for line in lines if "livedash.stream: stream resume " in line]) == 2, lines
    assert len(lines) == 7, lines
    joined = "\n".join(lines)
    assert "\\r\\nevent: pwn\\r\\n" in joined and "request\\x00\\x1b[31m\\x7f\\x85\\x9b\\u2028end" in joined
    assert 'topics="device/a' in joined and 'c status=200"' in joined, "a value with a space, quote or = is quoted"

    records = assert_clean_json(js.getvalue())
    assert len(records) == 7
    # JSON escapes losslessly: the values decode to exactly what the client sent.
    by_msg = {(r["msg"], r["request_id"]): r for r in records}
    assert by_msg[("request", "forge-path")]["path"] == PATH
    assert by_msg[("stream resume", "forge-query")]["last_event_id"] == FORGED[:64]
    assert by_msg[("stream resume", "forge-query")]["topics"] == TOPICS
    assert by_msg[("stream resume", "forge-header")]["last_event_id"] == "1-0\x85\x9b\x7f\tx"


def raw_request(port: int, target: bytes, headers: bytes = b"") -> bytes:
    """One HTTP/1.1 request exactly as written (percent-encoded target, obs-text header bytes).

    Read up to the end of the first event of a stream (or of a short answer's headers), then leave.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        answer = b""
        while b"\n\n" not in answer.partition(b"\r\n\r\n")[2] and b'"error"' not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_server_log_has_one_line_per_record(start_server: Callable[..., AppServer], log_format: str) -> None:
    server = start_server(LIVEDASH_LOG_FORMAT=log_format)
    assert server.log_path is not None
    nasty = b"%1B[31m%7F%C2%85%C2%9B%E2%80%A8end"
    forged = b"1-0%0D%0Aevent:%20pwn%0D%0A%0D%0A2026-01-01%2000:00:00,000Z%20INFO%20x:%20request%20status=200"
    requests = [
        (b"/api/nope%0D%0A2026-01-01%2000:00:00,000Z%20INFO%20x:%20request%00" + nasty, b""),
        (b"/api/stream?last_event_id=" + forged + b"&topics=device/a" + nasty, b""),
        # Header bytes 0x80-0xff pass HTTP parsers as obs-text and arrive as C1 controls.
        (b"/api/stream?topics=device/b%09c%20status=200", b"Last-Event-ID: 1-0\x85\x9b[31m\tx\r\n"),
    ]
    for i, (target, headers) in enumerate(requests):
        answer = raw_request(server.port, target, headers + b"X-Request-ID: forge-%d\r\n" % i)
        assert answer.startswith((b"HTTP/1.1 404", b"HTTP/1.1 200")), answer[:200]

    log_path: Path = server.log_path

    def resumed() -> int:
        return log_path.read_text(errors="replace").count("stream resume")

    wait_until(lambda: resumed() >= 2, timeout=10, what=f"both streams' resume lines in {log_path}")
    server.stop()  # the streams end (shutdown) and log their close lines
    raw = log_path.read_bytes().decode("utf-8")
    assert not RAW_CONTROL.search(raw), [line for line in lines_of(raw) if RAW_CONTROL.search(line)]
    ours = [line for line in lines_of(raw) if "forge-" in line]
    if log_format == "json":
        records = [json.loads(line) for line in ours]
        assert sorted(str(r["msg"]) for r in records) == ["request"] * 3 + ["stream close"] * 2 + ["stream resume"] * 2
        resumes = [r for r in records if r["msg"] == "stream resume"]
        assert {str(r["last_event_id"]) for r in resumes} == {
            "1-0\r\nevent: pwn\r\n\r\n2026-01-01 00:00:00,000Z INFO x: request status=200"[:64],
            "1-0\x85\x9b[31m\tx",
        }
    else:
        for line in lines_of(raw):
            # Hypercorn's own start-up lines come before the app's handler ("[2026-...] [pid] [INFO] ..."),
            # and a multi-line message of ours (the auth-off banner) continues on indented lines.
            assert RECORD_START.match(line) or line.startswith(("[", "    ")), f"a forged or broken line: {line!r}"
            assert not line.startswith("2026-01-01"), f"a forged record: {line!r}"
        assert len([line for line in ours if "livedash.access: request " in line]) == 3, ours
        assert len([line for line in ours if "livedash.stream: stream " in line]) == 4, ours
        assert len(ours) == 7, ours
        assert "event: pwn" not in raw.replace("\\r\\nevent: pwn", ""), "the forged event stays inside its value"

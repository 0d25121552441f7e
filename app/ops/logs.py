"""Logs: one line per request, one per stream lifecycle step, request ids.

Every request gets an id: the incoming ``X-Request-ID`` when it is a sane
token (a proxy or load balancer usually sets one), else a fresh one. It is
echoed in the response's ``X-Request-ID`` and carried by every log line
written while the request (or its stream) runs, through a context variable.

Lines (logger ``livedash.access`` and ``livedash.stream``):

    request        method, path, route, status, ms              (every request)
    stream open    topics, format; ``stream resume`` with last_event_id
    stream close   reason (client-gone, slow-consumer, shutdown, ...), seconds, bytes

``LIVEDASH_LOG_FORMAT=json`` turns each line into one JSON object with those
fields as keys. The stream's close reason comes from its subscription
(``stream_ended``, called by ``routes/stream.py``), because from outside a
drop and a client going away both look like a cancelled task.

No value can forge a line: many come from the client (the path, topics,
``Last-Event-ID``, anything an error message quotes), so both formats escape
control characters (C0, DEL, C1, and the Unicode line and paragraph
separators). Text writes them as backslash escapes (newline as backslash-n,
NUL as backslash-x00, a backslash doubled) and quotes a value holding a
space, a double quote or ``=`` (logfmt), so a value cannot pose as another
field either; a traceback keeps its lines, each continuation indented. JSON
writes them as ``\\uXXXX`` escapes, which decode to the original value.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from quart import Quart, Response, g, request
from quart.wrappers.response import ResponseBody

from app.ops import telemetry
from app.settings import Settings

access_log = logging.getLogger("livedash.access")
stream_log = logging.getLogger("livedash.stream")

REQUEST_ID_HEADER = "X-Request-ID"
ASGI_REQUEST_ID_HEADER = REQUEST_ID_HEADER.lower().encode()
_SANE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

request_id_var: ContextVar[str] = ContextVar("livedash_request_id", default="-")


def asgi_request_id(headers: dict[bytes, bytes]) -> str:
    """For a raw ASGI path: the request id, the client's if sane (``new_request_id``)."""
    return new_request_id(headers.get(ASGI_REQUEST_ID_HEADER, b"").decode("latin-1") or None)


def new_request_id(incoming: str | None) -> str:
    if incoming and _SANE_ID.match(incoming):
        return incoming
    # A forged or oversized id would poison log lines; replace it.
    return uuid.uuid4().hex


# --- formatting ---------------------------------------------------------------
# What may never reach a log line raw: C0 controls, DEL, C1 controls, and the
# Unicode line and paragraph separators (some viewers break lines on them).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape(text: str) -> str:
    """``text`` on one line: backslashes doubled, control characters as ``\\n``, ``\\x00``, ``\\u2028``."""
    return _CONTROL.sub(_escape_char, text.replace("\\", "\\\\"))


def text_value(value: Any) -> str:
    """A field's value in the text format: escaped, and quoted (logfmt) when it holds a space, ``"`` or ``=``."""
    text = escape(str(value))
    if text == "" or _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '\\"') + '"'
    return text


# orjson escapes C0 itself (JSON requires it) but leaves DEL, C1 and U+2028/9 raw (JSON allows them), in UTF-8.
_RAW_IN_JSON = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]")


def _escape_json(line: bytes) -> bytes:
    # They can only stand inside strings, so their \uXXXX escapes decode to the same value.
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group().decode()):04x}".encode(), line)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            **_fields(record),
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return _escape_json(orjson.dumps(body, default=str)).decode()


def _escaped_message(record: logging.LogRecord) -> str:
    """The message with its arguments escaped (they carry outside values; the format string is ours)."""
    args = record.args
    if not args:
        return str(record.msg)

    def safe(value: object) -> object:
        return value if isinstance(value, int | float) else escape(str(value))

    try:
        if isinstance(args, dict):
            return str(record.msg) % {key: safe(value) for key, value in args.items()}
        return str(record.msg) % tuple(safe(value) for value in args)
    except (TypeError, ValueError):
        return escape(record.getMessage())


def _continued(text: str) -> str:
    """Text of ours (a format string, a traceback): control characters escaped, but its lines kept.

    Lines after the first are indented, so none can pass for a record of its own.
    """
    first, *rest = (_CONTROL.sub(_escape_char, part) for part in text.split("\n"))
    return "".join([first, *("\n    " + part for part in rest)])


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.message = _continued(_escaped_message(record))
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        fields = _fields(record)
        rid = getattr(record, "request_id", "-")
        if rid != "-":
            fields = {"request_id": rid, **fields}
        if fields:
            line += " " + " ".join(f"{k}={text_value(v)}" for k, v in fields.items())
        tail = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            tail.append(record.exc_text)
        if record.stack_info:
            tail.append(self.formatStack(record.stack_info))
        for block in tail:
            line += _continued("\n" + block.rstrip("\n"))
        return line


JsonFormatter.converter = time.gmtime
TextFormatter.converter = time.gmtime


def configure(settings: Settings, *, force: bool = False) -> None:
    """Install the handler once per process (a hypercorn worker starts with none).

    Under pytest (or when an embedding program already configured logging)
    the root logger has handlers and is left alone unless ``force``.
    """
    root = logging.getLogger()
    if root.handlers and not force:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)sZ %(levelname)s %(name)s: %(message)s"))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Hypercorn gave its loggers handlers of their own before loading the app:
    # route them through ours instead, so its lines are not doubled and share the format.
    for name in ("hypercorn.error", "hypercorn.access"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True


def event(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields, "request_id": request_id_var.get()})


# --- stream lifecycle -----------------------------------------------------------
@dataclass
class StreamLife:
    started: float = field(default_factory=time.monotonic)
    reason: str = ""
    sent: int = 0


_stream_var: ContextVar[StreamLife | None] = ContextVar("livedash_stream", default=None)


def stream_ended(reason: str, sent: int) -> None:
    """Called by the stream as it finishes: its close reason (may be empty) and the bytes it yielded."""
    life = _stream_var.get()
    if life is not None:
        life.sent = sent
        if reason and not life.reason:
            life.reason = reason


def stream_opened(path: str, topics: str | None, fmt: str | None, last_id: str | None) -> StreamLife:
    """The stream's open line; returns its life, to be set in the context its body runs in."""
    fields: dict[str, Any] = {"path": path, "topics": topics or "*", "format": fmt or "json"}
    if last_id is not None:
        fields["last_event_id"] = last_id[:64]
    event(stream_log, logging.INFO, "stream resume" if last_id else "stream open", **fields)
    life = StreamLife()
    _stream_var.set(life)
    return life


def stream_closed(life: StreamLife, path: str, exc_type: type | None) -> None:
    """The stream's close line and metric, with why it ended."""
    if life.reason:
        reason = life.reason
    elif exc_type is not None and issubclass(exc_type, asyncio.CancelledError | GeneratorExit):
        reason = "client-gone"
    elif exc_type is not None:
        reason = "error"
    else:
        reason = "ended"
    telemetry.STREAMS_CLOSED.labels(reason).inc()
    level = logging.WARNING if reason in ("slow-consumer", "error") else logging.INFO
    event(
        stream_log,
        level,
        "stream close",
        path=path,
        reason=reason,
        seconds=round(time.monotonic() - life.started, 3),
        bytes=life.sent,
    )


class LoggedStream(ResponseBody):
    """Wraps a stream's body to log its close with the reason.

    Iteration goes straight to the inner body: a wrapping generator would add
    a coroutine hop to every write of every stream. The stream reports its
    byte count itself (``stream_ended``).
    """

    def __init__(self, inner: ResponseBody, life: StreamLife, path: str) -> None:
        self.inner = inner
        self.life = life
        self.path = path

    async def __aenter__(self) -> LoggedStream:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            await self.inner.__aexit__(exc_type, exc, tb)  # type: ignore[arg-type]
        finally:
            stream_closed(self.life, self.path, exc_type)

    def __aiter__(self) -> Any:
        return self.inner.__aiter__()  # type: ignore[attr-defined]  # every body Quart streams is async-iterable


# --- hooks ----------------------------------------------------------------------
def init_app(app: Quart) -> None:
    @app.before_request
    async def _start() -> None:
        rid = new_request_id(request.headers.get(REQUEST_ID_HEADER))
        # Set in the request task's own context, so it is still there while a
        # streamed body is sent (after the request context is gone).
        request_id_var.set(rid)
        g.request_started = time.perf_counter()

    @app.after_request
    async def _finish(response: Response) -> Response:
        rid = request_id_var.get()
        if rid == "-":  # before_request did not run (an early error)
            rid = new_request_id(request.headers.get(REQUEST_ID_HEADER))
            request_id_var.set(rid)
        response.headers[REQUEST_ID_HEADER] = rid
        elapsed = time.perf_counter() - getattr(g, "request_started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
        record_request(request.method, request.path, route, response.status_code, elapsed)
        if response.mimetype == "text/event-stream" and response.status_code == 200:
            _wrap_stream(response)
        return response


def record_request(method: str, path: str, route: str, status: int, elapsed: float) -> None:
    """A request's metrics and its access line (Quart's hook and the raw ingest path)."""
    telemetry.HTTP_REQUESTS.labels(route, method, str(status)).inc()
    telemetry.HTTP_SECONDS.labels(route).observe(elapsed)
    event(
        access_log,
        logging.INFO,
        "request",
        method=method,
        path=path,
        route=route,
        status=status,
        ms=round(elapsed * 1000, 2),
    )


def _wrap_stream(response: Response) -> None:
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or None
    life = stream_opened(request.path, request.args.get("topics"), request.args.get("format"), last_id)
    response.response = LoggedStream(response.response, life, request.path)

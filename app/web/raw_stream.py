"""``GET /api/stream`` answered on a raw ASGI path in front of Quart.

Why: after a deploy every page reconnects within a second or two, and a
profile of that storm put about a third of each stream open's CPU in Quart's
own machinery (request and app contexts, the request object, URL matching,
hooks, the response wrapper); the naive Quart peer's idle streams cost ~14 KiB
more memory each than the same SSE answered by bare hypercorn, for objects a
stream holds all its life. This path does only what the route needs, sharing
every piece that decides anything with it:

* who the caller is: ``auth.direct.stream_reader`` (a Bearer token or the
  session cookie, the role), as ``check_request`` decides it;
* whether the stream opens, its topics, format and resume point:
  ``routes.stream.stream_start`` (the scope, the per-token and per-process
  limits, shutdown, the log's state);
* the stream itself: ``events.drain.event_stream``; the access line, the
  stream's open and close lines and metrics: ``ops.logs``; the headers:
  ``security_headers.HEADERS`` and the route's ``STREAM_HEADERS``.

Anything it does not settle goes to Quart untouched, which answers it as
before: no or a bad credential (401, and the refusal counted against its
source), a stream ticket (spent once, by the route), a wrong role, any refusal
(an unknown format, a stream limit, shutting down), Redis unreachable.
``LIVEDASH_STREAM_FAST_PATH=0`` sends everything there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from urllib.parse import parse_qsl

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from quart import Quart
from redis.exceptions import RedisError

from app.auth.direct import stream_reader
from app.errors import ApiError
from app.events.drain import event_stream
from app.ops.logs import (
    ASGI_REQUEST_ID_HEADER,
    StreamLife,
    asgi_request_id,
    record_request,
    request_id_var,
    stream_closed,
    stream_opened,
)
from app.services import services_of
from app.web.routes.stream import STREAM_HEADERS, stream_start
from app.web.security_headers import ASGI_HEADERS

log = logging.getLogger(__name__)

PATH = "/api/stream"
ENDPOINT = "stream.stream"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    *((k.lower().encode(), v.encode()) for k, v in STREAM_HEADERS.items()),
    *ASGI_HEADERS,
]

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


class RawStream:
    """ASGI middleware: serves ``GET /api/stream`` itself when it can, everything else goes to ``inner``."""

    def __init__(self, app: Quart, inner: ASGIApp) -> None:
        self.app = app
        self.inner = inner

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == PATH
            and scope["method"] == "GET"
            and "livedash" in self.app.extensions
            and await self._serve(scope, receive, send)
        ):
            return
        await self.inner(scope, receive, send)

    async def _serve(self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> bool:
        """False: not settled here, nothing sent; Quart takes the request."""
        started = time.perf_counter()
        headers = dict(scope["headers"])  # names come lower-cased from the server
        args: dict[str, str] = {}
        for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            args.setdefault(name, value)  # the first value, as request.args.get gives it
        if "ticket" in args:
            return False  # single use: the route spends it, once
        svc = services_of(self.app)
        last_id = headers.get(b"last-event-id", b"").decode("latin-1") or None
        try:
            identity = await stream_reader(
                self.app,
                headers.get(b"authorization", b"").decode("latin-1"),
                headers.get(b"cookie", b"").decode("latin-1"),
                ENDPOINT,
            )
            if identity is None:
                return False
            topics, fmt, resume = await stream_start(svc, identity, args, last_id)
        except (ApiError, RedisError, OSError):
            return False  # Quart answers with the refusal (or the 503) every other route gives
        rid = asgi_request_id(headers)
        request_id_var.set(rid)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_HEADERS, (ASGI_REQUEST_ID_HEADER, rid.encode())],
                "trailers": False,
            }
        )
        record_request("GET", PATH, PATH, 200, time.perf_counter() - started)
        # Set in this context, so the body's task (which copies it) reports its size and reason into it.
        life = stream_opened(PATH, args.get("topics"), args.get("format"), last_id or args.get("last_event_id"))
        await _follow(event_stream(svc, topics, fmt, resume), life, receive, send)
        return True


async def _follow(
    body: AsyncGenerator[bytes, None], life: StreamLife, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    """Send the stream until it ends or the client goes; the hub may cancel it (a slow consumer)."""

    async def pump() -> None:
        failed: type | None = None
        try:
            async for chunk in body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except BaseException as exc:
            failed = type(exc)
            if not isinstance(exc, asyncio.CancelledError | OSError):
                log.exception("stream failed")
            raise
        finally:
            with contextlib.suppress(Exception):
                await body.aclose()  # its own finally: unsubscribe, and the size for the close line
            stream_closed(life, PATH, failed)

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    # The stream runs in a task of its own: event_stream subscribes with it, so the hub can cancel it.
    streaming = asyncio.ensure_future(pump())
    watching = asyncio.ensure_future(gone())
    try:
        await asyncio.wait((streaming, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (streaming, watching):
            task.cancel()
        await asyncio.gather(streaming, watching, return_exceptions=True)


def init_app(app: Quart, enabled: bool) -> None:
    if enabled:
        app.asgi_app = RawStream(app, app.asgi_app)  # type: ignore[method-assign]

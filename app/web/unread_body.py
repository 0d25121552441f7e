"""Answers given before the request body was read keep the connection usable.

A POST refused at the door (401, 403, 415, 429, ...) is answered before its
body has arrived in full. hypercorn then closes the connection once the
response is sent (HTTP/1.1 cannot start the next request while the previous
one's body is still coming) but says nothing about it, so a keep-alive client
that sends its next request on that connection gets "Server disconnected
without sending a response".

``UnreadBody`` wraps the whole ASGI app (outside the JSON ingest fast path).
When a response starts while the request body is incomplete, it first reads
and discards the rest of a small body (``DRAIN_LIMIT``, within
``DRAIN_TIMEOUT``), so hypercorn can keep the connection alive; a larger or
slower body gets ``Connection: close`` instead, and the client knows not to
reuse the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable, ASGISendEvent, Scope

DRAIN_LIMIT = 256 * 1024
DRAIN_TIMEOUT = 2.0

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


class UnreadBody:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                with contextlib.suppress(ValueError):
                    length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked and not length:
            await self.app(scope, receive, send)
            return
        finished = asyncio.Event()

        async def tracked_receive() -> ASGIReceiveEvent:
            message = await receive()
            if message["type"] == "http.disconnect" or not cast(dict[str, Any], message).get("more_body", False):
                finished.set()
            return message

        async def drain() -> bool:
            """Read the rest of the body (whoever receives it); True once it is all in."""
            if chunked or (length or 0) > DRAIN_LIMIT:
                return False
            deadline = asyncio.get_running_loop().time() + DRAIN_TIMEOUT
            while not finished.is_set():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return False
                # The app may still be receiving too (Quart reads the body in a
                # task of its own): wait for whichever of us gets the last part.
                reading = asyncio.ensure_future(tracked_receive())
                ended = asyncio.ensure_future(finished.wait())
                await asyncio.wait({reading, ended}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                for task in (reading, ended):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            return True

        async def guarded_send(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and not finished.is_set() and not await drain():
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = cast(ASGISendEvent, {**message, "headers": headers})
            await send(message)

        await self.app(scope, tracked_receive, guarded_send)

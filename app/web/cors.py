"""Cross-origin access, opt-in: CORS on ``/api/...`` for the origins in ``LIVEDASH_CORS_ORIGINS`` only.

An ASGI layer around the whole app (so it also covers the JSON ingest fast
path, which answers before Quart, and the stream):

- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an
  allowed origin is answered here, before any credential is asked for (a
  browser sends none with it): 204 with the methods and request headers the
  API takes, ``Access-Control-Allow-Credentials`` and a ``Max-Age``;
- an actual request from an allowed origin gets its answer with
  ``Access-Control-Allow-Origin`` (that origin, never ``*``),
  ``Access-Control-Allow-Credentials: true`` (a page may send its session
  cookie where the browser attaches it; cookie writes still need
  ``X-CSRF-Token``) and the headers a page may read (``ETag``, ``Location``,
  ``Retry-After``, the ``X-Livedash-*`` figures, htmx's response headers);
- any other origin gets nothing: no CORS header, its preflight goes on to the
  app (which asks for a credential), so the browser refuses the page.

Every ``/api/`` answer carries ``Vary: Origin`` while an allowlist is set, so
a cache never hands one origin's answer to another. Pages other than the API
(``/``, ``/login``) are never shared across origins. See docs/embed.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]

PREFIX = "/api/"
ALLOW_METHODS = "GET, POST, HEAD, OPTIONS"
ALLOW_HEADERS = ", ".join(
    (
        "Authorization",
        "Content-Type",
        "Content-Encoding",
        "Last-Event-ID",
        "If-Match",
        "If-None-Match",
        "X-CSRF-Token",
        "X-Request-ID",
        "Cache-Control",
        # What htmx sends with its requests.
        "HX-Request",
        "HX-Current-URL",
        "HX-Target",
        "HX-Trigger",
        "HX-Trigger-Name",
        "HX-Boosted",
        "HX-Prompt",
        "HX-History-Restore-Request",
    )
)
EXPOSE_HEADERS = ", ".join(
    (
        "ETag",
        "Location",
        "Retry-After",
        "X-Request-ID",
        "X-Livedash-Accepted",
        "X-Livedash-Cursor",
        "X-Livedash-Skipped-Fields",
        "X-Livedash-Rejected-Lines",
        "HX-Trigger",
        "HX-Redirect",
        "HX-Refresh",
        "HX-Location",
        "HX-Reswap",
        "HX-Retarget",
    )
)
MAX_AGE = "600"


def _header(scope: Scope, name: bytes) -> str | None:
    headers: Iterable[tuple[bytes, bytes]] = scope["headers"]  # type: ignore[typeddict-item]
    for key, value in headers:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
    ]


class Cors:
    def __init__(self, app: ASGIApp, origins: frozenset[str]) -> None:
        self.app = app
        self.origins = origins

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http" or not self.origins or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        allowed = origin is not None and origin.lower() in self.origins
        if allowed and scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            assert origin is not None
            await self._preflight(origin, send)
            return
        extra: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
        if allowed:
            assert origin is not None
            extra += [*cors_headers(origin), (b"access-control-expose-headers", EXPOSE_HEADERS.encode())]

        async def send_with(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", ()))
                names = {bytes(k).lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra if k not in names or k == b"vary"]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with)

    @staticmethod
    async def _preflight(origin: str, send: ASGISendCallable) -> None:
        headers = [
            *cors_headers(origin),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-max-age", MAX_AGE.encode()),
            (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers, "trailers": False})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

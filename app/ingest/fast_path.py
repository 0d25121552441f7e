"""``POST /api/metrics`` with a JSON body, answered on a raw ASGI path in front of Quart.

Why: a sensor fleet posts one reading per request, thousands a second, and
a profile of that load put about a fifth of each request's CPU in Quart's
own machinery (request and app contexts, the request object, URL matching,
response objects, signals) around a handler that parses, checks and stores.
This path does only what that route needs, sharing every piece that decides
anything with the Quart route:

* who the caller is: ``auth.direct.bearer_writer`` (the token lookup, the role and
  the write rate limit, as ``check_request`` does them);
* what is accepted: ``routes.metrics.accept_readings`` (validation of the
  whole batch, device scope, the one ingest step);
* what an error looks like: ``errors.json_body``; the access line and HTTP
  metrics: ``logs.record_request``; the headers: ``security_headers.HEADERS``.

Anything it does not settle goes to Quart untouched (its body unread): form
bodies, cookie sessions (CSRF), a missing or bad credential, a wrong role,
another content type. ``LIVEDASH_INGEST_FAST_PATH=0`` sends everything there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from quart import Quart
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.auth.direct import bearer_writer
from app.errors import ApiError, RequestTimeout, body_too_large, storage_unavailable
from app.errors import json_body as error_json
from app.ops.logs import ASGI_REQUEST_ID_HEADER, asgi_request_id, record_request, request_id_var
from app.services import services_of
from app.web.bodies import is_json, parse_json
from app.web.routes.readings import accept_readings
from app.web.routing import fast_path_op
from app.web.security_headers import ASGI_HEADERS

log = logging.getLogger(__name__)

# What this path answers, from the route's declaration (``fast_path=True``): POST /api/metrics, metrics.ingest.
ENDPOINT, _OP = fast_path_op()
PATH, METHOD = _OP.path, _OP.method.upper()

_JSON = (b"content-type", b"application/json")

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


def _is_json(content_type: bytes) -> bool:
    return is_json(content_type.split(b";", 1)[0].strip().lower().decode("latin-1"))


class FastIngest:
    """ASGI middleware: serves the JSON ``POST /api/metrics`` itself, everything else goes to ``inner``."""

    def __init__(self, app: Quart, inner: ASGIApp) -> None:
        self.app = app
        self.inner = inner

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == METHOD:
            headers = dict(scope["headers"])  # names come lower-cased from the server
            eligible = _is_json(headers.get(b"content-type", b"")) and "livedash" in self.app.extensions
            if eligible and await self._serve(headers, receive, send):
                return
        await self.inner(scope, receive, send)

    async def _serve(self, headers: dict[bytes, bytes], receive: ASGIReceiveCallable, send: ASGISendCallable) -> bool:
        """False: not settled here, nothing read or sent; Quart takes the request."""
        started = time.perf_counter()
        rid = asgi_request_id(headers)
        token = request_id_var.set(rid)
        status = await self._answer(headers, receive, send, rid)
        if status is None:
            request_id_var.reset(token)  # Quart's own hook sets it again
            return False
        record_request("POST", PATH, PATH, status, time.perf_counter() - started)
        return True

    async def _answer(
        self, headers: dict[bytes, bytes], receive: ASGIReceiveCallable, send: ASGISendCallable, rid: str
    ) -> int | None:
        """The status sent, or None when the request is left to Quart."""
        error: ApiError
        try:
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            identity = await bearer_writer(self.app, authorization, ENDPOINT, PATH)
            if identity is None:
                return None
            eng = services_of(self.app)
            body = parse_json(await self._body(headers, receive, eng.settings.max_body_bytes))
            answer = await accept_readings(eng, body, identity)
        except ApiError as exc:
            error = exc
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("Redis unavailable during POST %s: %s", PATH, exc)
            error = storage_unavailable()
        except _ClientGone:
            return 499  # as nginx logs it: the client left before its body arrived
        else:
            await _respond(send, 202, orjson.dumps(answer), rid)
            return 202
        await _respond(send, error.status, error_json(error), rid, error.headers)
        return error.status

    async def _body(self, headers: dict[bytes, bytes], receive: ASGIReceiveCallable, limit: int) -> bytes:
        too_large = body_too_large(limit)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(float(self.app.config["BODY_TIMEOUT"])):
                while True:
                    message: Any = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise RequestTimeout("the request body did not arrive in time") from None
        return b"".join(chunks)


class _ClientGone(Exception):
    """The client disconnected before its body arrived."""


async def _respond(
    send: ASGISendCallable, status: int, body: bytes, rid: str, extra: dict[str, str] | None = None
) -> None:
    headers = [
        _JSON,
        (b"content-length", str(len(body)).encode()),
        (ASGI_REQUEST_ID_HEADER, rid.encode()),
        *ASGI_HEADERS,
    ]
    if extra:
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers, "trailers": False})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def init_app(app: Quart, enabled: bool) -> None:
    if enabled:
        app.asgi_app = FastIngest(app, app.asgi_app)  # type: ignore[method-assign]

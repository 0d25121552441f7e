"""Errors: one typed hierarchy, rendered in one place.

    ApiError                  status, code, detail
    ├── BadRequest            400 bad_request      (malformed JSON, bad query)
    ├── Unauthorized          401 unauthorized     (no credential, or a bad one)
    ├── Forbidden             403 forbidden        (a role, scope or CSRF check said no)
    ├── NotFound              404 not_found
    ├── RequestTimeout        408 request_timeout  (the body did not arrive in time)
    ├── Conflict              409 conflict         (a version check failed)
    ├── Gone                  410 gone             (the document was deleted; its tombstone in the body)
    ├── PayloadTooLarge       413 too_large
    ├── UnsupportedMediaType  415 unsupported_media_type
    ├── Unprocessable         422 invalid          (well-formed, but wrong)
    ├── TooManyRequests       429 rate_limited     (with Retry-After)
    └── Unavailable           503 unavailable      (Redis down, at capacity)

``register(app)`` installs the one handler that turns any of them, Werkzeug's
HTTP exceptions and Redis connection failures into an answer:

- an htmx request (``HX-Request``): an HTML fragment (``fragments/error.html``)
  that the page shows in place, carrying the code and status as data
  attributes;
- ``/api`` (and any client that asks for JSON): ``{"error", "detail"}`` JSON,
  plus any extra fields the error carries (``current`` on a 409 or 410);
- otherwise a small HTML page that loads no live client.

Bad input never becomes a 500.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from quart import Quart, Response, current_app, render_template, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException

from app.web.htmx import is_htmx

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        detail: Any = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.body = body or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class RequestTimeout(ApiError):
    status, code = 408, "request_timeout"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Gone(ApiError):
    """The document was deleted; its tombstone answers instead of a resurrection."""

    status, code = 410, "gone"


class PayloadTooLarge(ApiError):
    status, code = 413, "too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(ApiError):
    status, code = 422, "invalid"


class TooManyRequests(ApiError):
    status, code = 429, "rate_limited"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def asks_for_html() -> bool:
    """A browser: its ``Accept`` names HTML itself. ``*/*`` (curl, httpx, fetch) or Prometheus's types do not."""
    return any(kind in HTML_TYPES and quality > 0 for kind, quality in request.accept_mimetypes)


HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def wants_json() -> bool:
    """JSON unless a browser asks for HTML (outside ``/api``) and prefers it to JSON."""
    if request.path.startswith("/api") or request.path in ("/healthz", "/readyz"):
        return True
    if not asks_for_html():
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def json_body(error: ApiError) -> bytes:
    """The one JSON shape of an error: ``{"error": code, "detail": ...}`` plus any extra fields."""
    return orjson.dumps({"error": error.code, "detail": error.detail, **error.body})


def body_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body larger than {limit} bytes (LIVEDASH_MAX_BODY_BYTES)")


def storage_unavailable() -> Unavailable:
    return Unavailable("storage is unreachable; nothing was stored, retry shortly", headers={"Retry-After": "2"})


def detail_text(detail: Any) -> str:
    """``detail`` for people: a list of field errors as ``field: error; ...``."""
    if isinstance(detail, list):
        return "; ".join(
            f"{item.get('field')}: {item.get('error')}" if isinstance(item, dict) else str(item) for item in detail
        )
    return "" if detail is None else str(detail)


async def render_error(error: ApiError) -> Response:
    headers = dict(error.headers)
    if is_htmx():
        html = await render_template("fragments/error.html", error=error, detail=detail_text(error.detail))
        response = Response(html, status=error.status, content_type="text/html; charset=utf-8")
    elif wants_json():
        response = Response(json_body(error), status=error.status, content_type="application/json")
    else:
        # error.html empties base.html's live blocks: no page context needed, no live client.
        html = await render_template("error.html", error=error)
        response = Response(html, status=error.status, content_type="text/html; charset=utf-8")
    response.headers.update(headers)
    return response


def register(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        return await render_error(error)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 413:  # Quart's MAX_CONTENT_LENGTH check: say which limit
            return await render_error(body_too_large(int(current_app.config["MAX_CONTENT_LENGTH"])))
        wrapped = ApiError(error.description, code=_HTTP_CODES.get(status, "http_error"))
        wrapped.status = status
        if status == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            wrapped.headers["Allow"] = ", ".join(error.valid_methods)
        return await render_error(wrapped)

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    async def _redis_down(error: Exception) -> Response:
        log.warning("Redis unavailable during %s %s: %s", request.method, request.path, error)
        return await render_error(storage_unavailable())

"""``/healthz`` (the process answers) and ``/readyz`` (Redis answers, the reader runs)."""

from __future__ import annotations

import contextlib

from quart import Blueprint, Response
from redis.exceptions import RedisError

from app.auth.access import PUBLIC
from app.services import services
from app.web.responses import json_response
from app.web.routing import route

bp = Blueprint("health", __name__)


# Public: liveness and readiness for load balancers.
@route(bp, "GET", "/healthz", access=PUBLIC, summary="The process answers", tag="operations")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', content_type="application/json")


@route(
    bp,
    "GET",
    "/readyz",
    access=PUBLIC,
    summary="Redis answers and the event reader runs",
    tag="operations",
    errors=(503,),
)
async def readyz() -> Response:
    svc = services()
    checks = {"redis": False, "reader": svc.hub.healthy.is_set()}
    with contextlib.suppress(RedisError, OSError):
        checks["redis"] = bool(await svc.redis.ping())
    ok = all(checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    headers = {} if ok else {"Retry-After": "2"}
    return json_response(body, 200 if ok else 503, headers)

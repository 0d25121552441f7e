"""``/healthz`` (the process answers) and ``/readyz`` (Redis answers, the reader runs)."""

from __future__ import annotations

import asyncio
import contextlib

from quart import Blueprint, Response
from redis.exceptions import RedisError

from app.auth.access import PUBLIC
from app.services import services
from app.web.responses import json_response
from app.web.routing import route

bp = Blueprint("health", __name__)

STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["ok", "unavailable"]}}}

# How long /readyz waits for a reader that was told to reconnect.
READER_CATCH_UP = 1.0


# Public: liveness and readiness for load balancers.
@route(bp, "GET", "/healthz", access=PUBLIC, summary="The process answers", tag="operations", ok_schema=STATUS)
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', content_type="application/json")


@route(
    bp,
    "GET",
    "/readyz",
    access=PUBLIC,
    summary="Redis answers and the event reader runs",
    tag="operations",
    ok_schema=STATUS,
    errors=(503,),
)
async def readyz() -> Response:
    svc = services()
    checks = {"redis": False, "reader": False}
    with contextlib.suppress(RedisError, OSError):
        checks["redis"] = bool(await svc.redis.ping())
    if checks["redis"] and not svc.hub.healthy.is_set():
        # Redis answers requests again but the reader is still in its reconnect
        # backoff: have it try now, so readiness follows what requests see.
        svc.events_reader.retry_now()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(svc.hub.healthy.wait(), READER_CATCH_UP)
    checks["reader"] = svc.hub.healthy.is_set()
    ok = all(checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    headers = {} if ok else {"Retry-After": "2"}
    return json_response(body, 200 if ok else 503, headers)

"""``GET /api/stream`` gives the same answers on the raw path in front of Quart and through Quart.

Each test runs twice against a real server: with the raw path
(``LIVEDASH_STREAM_FAST_PATH=1``, the default) and without it. Refusals go
through Quart either way; what the raw path settles (a token, a session
cookie) must look exactly as Quart's answer did: headers, scope, resume, the
end of a stream the client left. What it buys (CPU per open, memory per open
stream) is measured in ``bench/`` (the storm and idle scenarios).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from .servers import AppServer
from .sse_client import open_stream, payload
from .waiting import async_wait_until

ADMIN = "raw-stream-admin-token-0123456789"
SECRET = "raw-stream-secret-key-0123456789abcdef"
STREAM_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


@pytest.fixture(params=["1", "0"], ids=["raw-path", "quart"])
def stream_server(request: pytest.FixtureRequest, start_server: Callable[..., AppServer]) -> AppServer:
    return start_server(
        LIVEDASH_AUTH="on", SECRET_KEY=SECRET, LIVEDASH_ADMIN_TOKEN=ADMIN, LIVEDASH_STREAM_FAST_PATH=request.param
    )


@pytest.fixture
async def admin(stream_server: AppServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stream_server.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
    ) as http:
        yield http


async def token(admin: httpx.AsyncClient, role: str, **extra: object) -> str:
    made = await admin.post("/api/tokens", json={"role": role, "name": f"raw-{role}", **extra})
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


def streams_open(server: AppServer, admin: str = ADMIN) -> float:
    text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {admin}"}, timeout=5).text
    match = re.search(r"^livedash_streams_open (\S+)$", text, re.M)
    assert match, text
    return float(match.group(1))


async def test_a_token_stream_has_the_routes_headers_scope_and_end(
    stream_server: AppServer, admin: httpx.AsyncClient
) -> None:
    viewer = await token(admin, "viewer", scope=["device/pump-*"])
    headers = {"Authorization": f"Bearer {viewer}", "X-Request-ID": "raw-stream-check-1"}
    async with open_stream(stream_server.url, headers=headers) as stream:
        response = stream.source.response
        assert {k: response.headers.get(k) for k in STREAM_HEADERS} == STREAM_HEADERS
        assert response.headers["x-request-id"] == "raw-stream-check-1"
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert (await stream.next()).event == "ready"
        for device in ("fan-1", "pump-1"):
            posted = await admin.post("/api/metrics", json={"device": device, "metric": "m", "value": 1})
            assert posted.status_code == 202
        [event] = await stream.take(1)
        assert payload(event)["topic"] == "device/pump-1"  # the scope narrows what the stream sees
        assert streams_open(stream_server) == 1

    async def closed() -> bool:
        return streams_open(stream_server) == 0

    await async_wait_until(closed, timeout=10, what="the stream's subscription released after the client left")


async def test_a_resumed_token_stream_replays_what_it_missed(
    stream_server: AppServer, admin: httpx.AsyncClient
) -> None:
    viewer = await token(admin, "viewer")
    first = await admin.post("/api/metrics", json={"device": "d", "metric": "m", "value": 1})
    await admin.post("/api/metrics", json={"device": "d", "metric": "m", "value": 2})
    headers = {"Authorization": f"Bearer {viewer}", "Last-Event-ID": first.json()["cursor"]}
    async with open_stream(stream_server.url, headers=headers) as stream:
        [event] = await stream.take(1)
        assert payload(event)["data"]["value"] == 2.0


async def test_refusals_are_quarts_on_both_paths(stream_server: AppServer, admin: httpx.AsyncClient) -> None:
    viewer = await token(admin, "viewer")
    metrics_only = await token(admin, "metrics")
    async with httpx.AsyncClient(base_url=stream_server.url, timeout=10) as http:
        bad = await http.get("/api/stream", headers={"Authorization": "Bearer ldt_not-a-token"})
        assert bad.status_code == 401 and bad.json()["error"] == "bad_credentials"
        assert bad.headers["www-authenticate"].startswith("Bearer")
        nobody = await http.get("/api/stream")
        assert nobody.status_code == 401
        wrong_role = await http.get("/api/stream", headers={"Authorization": f"Bearer {metrics_only}"})
        assert wrong_role.status_code == 403 and wrong_role.json()["error"] == "wrong_role"
        bad_format = await http.get(
            "/api/stream", params={"format": "xml"}, headers={"Authorization": f"Bearer {viewer}"}
        )
        assert bad_format.status_code == 400 and bad_format.json()["error"] == "bad_query"


async def test_a_session_cookie_opens_the_stream(stream_server: AppServer, admin: httpx.AsyncClient) -> None:
    viewer = await token(admin, "viewer")
    async with httpx.AsyncClient(base_url=stream_server.url, timeout=10) as browser:
        login = await browser.post("/login", data={"token": viewer})
        assert login.status_code in (302, 303), login.text
        cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    async with open_stream(stream_server.url, headers={"Cookie": cookie}) as stream:
        assert (await stream.next()).event == "ready"

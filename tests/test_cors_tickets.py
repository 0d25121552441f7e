"""Cross-origin access, opt-in (issue 19, item 1): CORS for allowed origins only, stream tickets for EventSource.

Against a real server (hypercorn), with httpx and httpx-sse: what a browser
on another origin would send (``Origin``, preflights, a ticket in the
stream's URL), and what it must be refused.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from httpx_sse import aconnect_sse
from quart import Quart

from app import create_app
from app.settings import Settings

from .servers import AppServer
from .sse_client import Stream
from .waiting import async_wait_until

ALLOWED = "https://dash.example.org"
OTHER_ALLOWED = "http://localhost:5173"
REFUSED = "https://evil.example.com"
ADMIN = "cors-admin-token-0123456789"
SECRET = "cors-test-secret-key-0123456789abcdef"
TTL = 3


@pytest.fixture
def secure_server(start_server: Callable[..., AppServer]) -> AppServer:
    return start_server(
        LIVEDASH_AUTH="on",
        SECRET_KEY=SECRET,
        LIVEDASH_ADMIN_TOKEN=ADMIN,
        LIVEDASH_CORS_ORIGINS=f"{ALLOWED}, {OTHER_ALLOWED}",
        LIVEDASH_STREAM_TICKET_TTL=str(TTL),
        LIVEDASH_AUTH_RECHECK_INTERVAL="0.5",
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_token(http: httpx.AsyncClient, role: str, **extra: object) -> tuple[str, str]:
    response = await http.post("/api/tokens", json={"role": role, **extra}, headers=bearer(ADMIN))
    assert response.status_code == 201, response.text
    body = response.json()
    return str(body["token"]), str(body["id"])


@asynccontextmanager
async def client(server: AppServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10.0, read=30.0)) as http:
        yield http


async def ticket(http: httpx.AsyncClient, token: str, **body: object) -> dict[str, object]:
    response = await http.post("/api/stream/ticket", json=body, headers={**bearer(token), "Origin": ALLOWED})
    assert response.status_code == 201, response.text
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    answer: dict[str, object] = response.json()
    return answer


async def next_event(stream: Stream, types: set[str], within: float = 10.0) -> tuple[str, str]:
    async with asyncio.timeout(within):
        while True:
            event = await stream.next(within)
            if event.event in types:
                return event.event, event.data


# --- CORS ------------------------------------------------------------------------------
async def test_preflight_from_an_allowed_and_a_refused_origin(secure_server: AppServer) -> None:
    async with client(secure_server) as http:
        asks = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-csrf-token",
        }
        ok = await http.options("/api/annotations", headers={"Origin": ALLOWED, **asks})
        assert ok.status_code == 204
        assert ok.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert ok.headers["Access-Control-Allow-Credentials"] == "true"
        assert "POST" in ok.headers["Access-Control-Allow-Methods"]
        allowed_headers = ok.headers["Access-Control-Allow-Headers"].lower()
        for header in ("authorization", "content-type", "x-csrf-token", "last-event-id", "hx-request"):
            assert header in allowed_headers
        assert "Origin" in ok.headers["Vary"]
        # The stream's preflight (a page's fetch-based SSE client sending Last-Event-ID), the second origin.
        ok = await http.options(
            "/api/stream",
            headers={"Origin": OTHER_ALLOWED, "Access-Control-Request-Method": "GET"},
        )
        assert ok.status_code == 204 and ok.headers["Access-Control-Allow-Origin"] == OTHER_ALLOWED

        refused = await http.options("/api/annotations", headers={"Origin": REFUSED, **asks})
        assert refused.status_code != 204
        assert not any(h.lower().startswith("access-control-") for h in refused.headers)
        # An origin differing only by scheme or port is another origin.
        for near in ("http://dash.example.org", "https://dash.example.org:8443"):
            response = await http.options("/api/annotations", headers={"Origin": near, **asks})
            assert "access-control-allow-origin" not in response.headers


async def test_actual_requests_from_an_allowed_and_a_refused_origin(secure_server: AppServer) -> None:
    async with client(secure_server) as http:
        editor, _ = await make_token(http, "editor")
        device, _ = await make_token(http, "device")
        # A JSON reading (the ingest fast path answers it before Quart) and a snapshot.
        posted = await http.post(
            "/api/metrics",
            json={"device": "pump-1", "metric": "temp", "value": 1.5},
            headers={**bearer(device), "Origin": ALLOWED},
        )
        assert posted.status_code == 202, posted.text
        assert posted.headers["Access-Control-Allow-Origin"] == ALLOWED
        latest = await http.get("/api/metrics/latest", headers={**bearer(editor), "Origin": ALLOWED})
        assert latest.status_code == 200
        assert latest.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert latest.headers["Access-Control-Allow-Credentials"] == "true"
        assert "Origin" in latest.headers["Vary"]
        # A created annotation's ETag is readable by the page.
        note = await http.post(
            "/api/annotations",
            json={"device": "pump-1", "text": "bearing replaced", "ts": int(time.time() * 1000)},
            headers={**bearer(editor), "Origin": ALLOWED},
        )
        assert note.status_code == 201, note.text
        assert "ETag" in note.headers
        exposed = [h.strip().lower() for h in note.headers["Access-Control-Expose-Headers"].split(",")]
        assert "etag" in exposed and "x-livedash-cursor" in exposed
        # Errors carry the headers too, so the page can read why.
        denied = await http.get("/api/metrics/latest", headers={"Origin": ALLOWED})
        assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] == ALLOWED

        # Another origin: the request is answered (the browser then hides it), with no CORS header.
        for origin in (REFUSED, "null"):
            refused = await http.get("/api/metrics/latest", headers={**bearer(editor), "Origin": origin})
            assert not any(h.lower().startswith("access-control-") for h in refused.headers)
            assert "Origin" in refused.headers["Vary"]
        # Pages are never shared across origins.
        page = await http.get("/login", headers={"Origin": ALLOWED})
        assert "access-control-allow-origin" not in page.headers


async def test_credentials_a_session_cookie_from_an_allowed_origin(secure_server: AppServer) -> None:
    async with client(secure_server) as http:
        viewer, _ = await make_token(http, "viewer")
        signed_in = await http.get(f"/login?token={viewer}")
        assert signed_in.status_code == 303 and "livedash_session" in http.cookies
        who = await http.get("/api/session", headers={"Origin": ALLOWED})
        assert who.status_code == 200 and who.json()["role"] == "viewer"
        assert who.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert who.headers["Access-Control-Allow-Credentials"] == "true"


async def test_no_allowlist_no_cors(make_settings: Callable[..., Settings]) -> None:
    app: Quart = create_app(make_settings())
    async with app.test_app():
        http = app.test_client()
        response = await http.get("/api/metrics/latest", headers={"Origin": ALLOWED})
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response.headers and "Vary" not in response.headers
        preflight = await http.options(
            "/api/metrics/latest", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"}
        )
        assert "Access-Control-Allow-Origin" not in preflight.headers


def test_a_malformed_origin_is_refused_at_start(make_settings: Callable[..., Settings]) -> None:
    for bad in ("*", "https://dash.example.org/", "dash.example.org", "https://a.example/path"):
        with pytest.raises(ValueError, match="LIVEDASH_CORS_ORIGINS"):
            make_settings(cors_origins=bad)


# --- stream tickets ----------------------------------------------------------------------
async def test_a_ticket_opens_one_stream_once(secure_server: AppServer) -> None:
    async with client(secure_server) as http:
        viewer, _ = await make_token(http, "viewer")
        device, _ = await make_token(http, "device")
        issued = await ticket(http, viewer)
        assert issued["expires_in"] == TTL and issued["topics"] is None
        assert viewer not in str(issued["ticket"])
        async with aconnect_sse(http, "GET", str(issued["url"]), headers={"Origin": ALLOWED}) as source:
            assert source.response.status_code == 200
            stream = Stream(source)
            assert source.response.headers["Access-Control-Allow-Origin"] == ALLOWED
            kind, _ = await next_event(stream, {"ready"})
            assert kind == "ready"
            await http.post(
                "/api/metrics", json={"device": "pump-1", "metric": "t", "value": 2}, headers=bearer(device)
            )
            _, data = await next_event(stream, {"metric"})
            assert json.loads(data)["data"]["device"] == "pump-1"
        # Reuse: refused, whoever asks, even while the first stream is closed.
        again = await http.get(str(issued["url"]))
        assert again.status_code == 401
        assert again.json()["error"] == "bad_ticket" and again.json()["reason"] == "used"
        # Altered or made up: refused.
        forged = str(issued["ticket"])[:-2] + ("AA" if not str(issued["ticket"]).endswith("AA") else "BB")
        for bad in (forged, "nonsense", ""):
            response = await http.get("/api/stream", params={"ticket": bad})
            assert response.status_code == 401 and response.json()["reason"] == "invalid"
        # Minting needs a credential, and a role that may read.
        assert (await http.post("/api/stream/ticket")).status_code == 401
        assert (await http.post("/api/stream/ticket", headers=bearer(device))).status_code == 403


async def test_a_ticket_expires(secure_server: AppServer) -> None:
    async with client(secure_server) as http:
        viewer, _ = await make_token(http, "viewer")
        issued = await ticket(http, viewer)
        expires_at = int(str(issued["expires_at"]))

        async def past() -> bool:
            return time.time() * 1000 > expires_at + 100

        await async_wait_until(past, timeout=TTL + 5, what="the ticket's time to pass")
        response = await http.get(str(issued["url"]))
        assert response.status_code == 401 and response.json()["reason"] == "expired"


async def test_a_revoked_tokens_tickets_open_nothing_and_its_ticket_streams_end(secure_server: AppServer) -> None:
    async with client(secure_server) as http:
        viewer, viewer_id = await make_token(http, "viewer")
        unused = await ticket(http, viewer)
        used = await ticket(http, viewer)
        async with aconnect_sse(http, "GET", str(used["url"])) as source:
            assert source.response.status_code == 200
            stream = Stream(source)
            await next_event(stream, {"ready"})
            revoked = await http.post(f"/api/tokens/{viewer_id}/revoke", headers=bearer(ADMIN))
            assert revoked.status_code in (200, 204), revoked.text
            _, data = await next_event(stream, {"bye"})
            assert json.loads(data)["reason"] == "revoked"
        response = await http.get(str(unused["url"]))
        assert response.status_code == 401 and response.json()["reason"] == "revoked"


async def test_a_ticket_is_at_most_its_tokens_scope(secure_server: AppServer) -> None:
    async with client(secure_server) as http:
        scoped, _ = await make_token(http, "viewer", scope=["device/pump-*"])
        device, _ = await make_token(http, "device")
        # Outside the token's scope: no ticket.
        response = await http.post("/api/stream/ticket", json={"topics": "device/fan-1"}, headers=bearer(scoped))
        assert response.status_code == 403 and response.json()["error"] == "out_of_scope"
        response = await http.post("/api/stream/ticket", json={"topics": "device/*"}, headers=bearer(scoped))
        assert response.status_code == 403
        # `*` means everything the credential sees, as on the stream: its scope.
        assert (await ticket(http, scoped, topics="*"))["topics"] == ["device/pump-*"]
        # Within it: the ticket's topics bound the stream, whatever the stream's URL asks for.
        narrow = await ticket(http, scoped, topics=["device/pump-2"])
        assert narrow["topics"] == ["device/pump-2"]
        async with aconnect_sse(
            http, "GET", "/api/stream", params={"ticket": str(narrow["ticket"]), "topics": "*"}
        ) as source:
            assert source.response.status_code == 200
            stream = Stream(source)
            await next_event(stream, {"ready"})
            for name in ("fan-1", "pump-1", "pump-2"):
                posted = await http.post(
                    "/api/metrics", json={"device": name, "metric": "t", "value": 1}, headers=bearer(device)
                )
                assert posted.status_code == 202
            _, data = await next_event(stream, {"metric"})
            assert json.loads(data)["data"]["device"] == "pump-2"
        # Without topics: the token's own scope.
        wide = await ticket(http, scoped)
        assert wide["topics"] == ["device/pump-*"]


async def test_a_browser_session_gets_tickets_that_end_with_it(secure_server: AppServer) -> None:
    async with client(secure_server) as http, client(secure_server) as elsewhere:
        viewer, _ = await make_token(http, "viewer")
        assert (await http.get(f"/login?token={viewer}")).status_code == 303
        page = await http.get("/")
        match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert match
        csrf = {"X-CSRF-Token": match.group(1), "Origin": ALLOWED}
        # A cookie write: the session's CSRF token is required, as for any other.
        assert (await http.post("/api/stream/ticket", headers={"Origin": ALLOWED})).status_code == 403
        first = (await http.post("/api/stream/ticket", headers=csrf)).json()
        second = (await http.post("/api/stream/ticket", headers=csrf)).json()
        # The ticket alone opens the stream (no cookie on this client).
        async with aconnect_sse(elsewhere, "GET", str(first["url"])) as source:
            assert source.response.status_code == 200
            stream = Stream(source)
            await next_event(stream, {"ready"})
        assert (await http.post("/logout", headers=csrf)).status_code in (200, 204, 303)
        response = await elsewhere.get(str(second["url"]))
        assert response.status_code == 401 and response.json()["reason"] == "revoked"

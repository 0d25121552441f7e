"""The raw ASGI path for ``POST /api/metrics`` (app/ingest/fast_path.py).

It must answer exactly as the Quart route does (status, body, headers, what
is stored and audited), serve what it can settle, and hand everything else
to Quart with the body unread.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
import redis as sync_redis
from quart import Quart

from app import create_app
from app.ingest.fast_path import FastIngest
from app.services import services_of
from app.settings import Settings

from .servers import AppServer
from .test_security import ADMIN, ADMIN_TOKEN, bearer, login, make_token, secure_settings
from .types import QuartClient

FAST_ONLY_HEADERS = ("content-type", "x-request-id", "content-security-policy", "x-content-type-options")

ok = {"device": "pump-1", "metric": "t", "value": 1.5, "ts": 1_790_000_000_000}
CASES: list[tuple[str, str, Any]] = [
    # (name, credential, body: JSON-able or raw bytes)
    ("one reading", "device", ok),
    ("a batch", "device", [ok, ok | {"metric": "rpm", "value": 3}]),
    ("admin writes any device", "admin", ok | {"device": "fan-9"}),
    ("bad value", "device", ok | {"value": "hot"}),
    ("one bad item in a batch", "device", [ok, ok | {"device": "bad slug!"}]),
    ("unknown field", "device", ok | {"vaule": 1}),
    ("infinite value as text", "device", b'{"device": "pump-1", "metric": "t", "value": 1e999}'),
    ("a scalar body", "device", 42),
    ("an empty batch", "device", []),
    ("too big a batch", "device", [ok] * 4),
    ("malformed JSON", "device", b'{"device": '),
    ("empty body", "device", b""),
    ("too large a body", "device", b'{"device": "' + b"a" * 2000 + b'"}'),
    ("out-of-scope device", "device", ok | {"device": "fan-9"}),
    ("no credential", "none", ok),
    ("a bad token", "bad", ok),
    ("a viewer may not write", "viewer", ok),
    ("a malformed Authorization", "malformed", ok),
]


def _body(raw: Any) -> bytes:
    return raw if isinstance(raw, bytes) else orjson.dumps(raw)


def _shape(payload: dict[str, Any]) -> dict[str, Any]:
    # Event ids differ between the two runs; everything else must not.
    return {k: ("<id>" if k == "cursor" else v) for k, v in payload.items()}


async def _tokens(client: QuartClient) -> dict[str, dict[str, str]]:
    return {
        "device": bearer(await make_token(client, "device", devices=["pump-1"])),
        "viewer": bearer(await make_token(client, "viewer")),
        "admin": ADMIN,
        "bad": bearer("ldt_not-a-token"),
        "malformed": {"Authorization": "Basic dXNlcjpwYXNz"},
        "none": {},
    }


async def _answers(settings: Settings) -> list[tuple[int, dict[str, Any], dict[str, str]]]:
    application = create_app(settings)
    out: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    async with application.test_app():
        client = application.test_client()
        creds = await _tokens(client)
        for name, cred, raw in CASES:
            headers = creds[cred] | {"Content-Type": "application/json", "X-Request-ID": f"rid-{len(out)}"}
            response = await client.post("/api/metrics", data=_body(raw), headers=headers)
            got = {h: response.headers.get(h, "") for h in FAST_ONLY_HEADERS}
            got["retry-after"] = "yes" if response.headers.get("Retry-After") else ""
            got["www-authenticate"] = response.headers.get("WWW-Authenticate", "")
            body = await response.get_json()
            assert isinstance(body, dict), name
            out.append((response.status_code, _shape(body), got))
    return out


async def test_same_answers_with_and_without_the_fast_path(
    make_settings: Callable[..., Settings], sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    common = {"max_batch": 3, "max_body_bytes": 1024, "write_rate_limit": 1000}
    fast = await _answers(secure_settings(make_settings, ingest_fast_path=True, **common))
    stored_by_fast = sync_client.hgetall(f"{key_prefix}latest")
    sync_client.delete(f"{key_prefix}latest")
    slow = await _answers(secure_settings(make_settings, ingest_fast_path=False, **common))
    for (name, _, _), a, b in zip(CASES, fast, slow, strict=True):
        assert a == b, f"{name}: fast path {a} != Quart {b}"
    statuses = dict(zip((c[0] for c in CASES), (a[0] for a in fast), strict=True))
    assert statuses["one reading"] == statuses["a batch"] == statuses["admin writes any device"] == 202
    assert statuses["malformed JSON"] == statuses["empty body"] == 400
    assert statuses["too large a body"] == 413
    assert statuses["bad value"] == statuses["too big a batch"] == 422
    assert statuses["no credential"] == statuses["a bad token"] == 401
    assert statuses["out-of-scope device"] == statuses["a viewer may not write"] == 403
    # Only the accepted readings were stored, the same ones either way.
    assert (
        set(stored_by_fast)
        == set(sync_client.hgetall(f"{key_prefix}latest"))
        == {
            b"pump-1/t",
            b"pump-1/rpm",
            b"fan-9/t",
        }
    )


class Recorder:
    """The inner ASGI app: Quart, counting what the fast path handed over."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.paths: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append((scope["method"], scope["path"]))
        await self.inner(scope, receive, send)


@pytest.fixture
async def recorded(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Quart, Recorder]]:
    application = create_app(secure_settings(make_settings, ingest_fast_path=False, write_rate_limit=1000))
    recorder = Recorder(application.asgi_app)
    application.asgi_app = FastIngest(application, recorder)  # type: ignore[method-assign]
    async with application.test_app():
        yield application, recorder


async def test_what_the_fast_path_serves_and_what_it_hands_over(recorded: tuple[Quart, Recorder]) -> None:
    application, recorder = recorded
    client = application.test_client()
    device = bearer(await make_token(client, "device", devices=["pump-1"]))
    recorder.paths.clear()

    served = [
        await client.post("/api/metrics", json=ok, headers=device),
        await client.post("/api/metrics", json=ok | {"value": "x"}, headers=device),
        await client.post("/api/metrics", json=ok | {"device": "fan-1"}, headers=device),
        await client.post(
            "/api/metrics", data=orjson.dumps(ok), headers=device | {"Content-Type": "application/vnd.x+json"}
        ),
    ]
    assert [r.status_code for r in served] == [202, 422, 403, 202]
    assert recorder.paths == [], "JSON with a Bearer token that settles the caller never reaches Quart"

    handed = [
        await client.post("/api/metrics", form={"device": "pump-1", "metric": "t", "value": "2"}, headers=device),
        await client.post("/api/metrics", json=ok),
        await client.post("/api/metrics", json=ok, headers=bearer("nope")),
        await client.post("/api/metrics", data="value=1", headers=device | {"Content-Type": "text/plain"}),
        await client.get("/api/metrics/latest", headers=device),
    ]
    assert [r.status_code for r in handed] == [202, 401, 401, 415, 403]
    assert len(recorder.paths) == len(handed)

    # A browser session (cookie + CSRF) goes through Quart's checks.
    csrf = await login(client, ADMIN_TOKEN)
    recorder.paths.clear()
    assert (await client.post("/api/metrics", json=ok)).status_code == 403  # no CSRF header
    assert (await client.post("/api/metrics", json=ok, headers={"X-CSRF-Token": csrf})).status_code == 202
    assert recorder.paths == [("POST", "/api/metrics")] * 2


async def test_fast_path_rate_limits_and_audits_refusals_not_readings(make_settings: Callable[..., Settings]) -> None:
    application = create_app(secure_settings(make_settings, write_rate_limit=2, write_rate_window=30))
    async with application.test_app():
        client = application.test_client()
        token = await make_token(client, "device", devices=["pump-1"])
        statuses = [(await client.post("/api/metrics", json=ok, headers=bearer(token))).status_code for _ in range(3)]
        assert statuses == [202, 202, 429]
        note = {"device": "pump-1", "text": "bearing replaced", "author": "ops"}
        assert (await client.post("/api/annotations", json=note, headers=ADMIN)).status_code == 201
        entries = (await (await client.get("/api/audit", headers=ADMIN)).get_json())["entries"]
        actions = [(e["action"], e.get("path")) for e in entries]
        # Readings are data, not changes of who-may-do-what: a sensor fleet
        # would flush the bounded audit log in seconds. Refusals are audited, in their own log.
        assert actions.count(("write", "/api/metrics")) == 0
        assert actions.count(("write", "/api/annotations")) == 1, "changes to documents are audited"
        refusals = (await (await client.get("/api/audit?kind=refusals", headers=ADMIN)).get_json())["entries"]
        assert [(e["action"], e.get("path")) for e in refusals] == [("rate-limited", "/api/metrics")]
        assert all(token not in str(e) for e in entries + refusals)


def _raw_post(port: int, head: str, body: bytes, *, close_early: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        if close_early:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and not close_early:
                break
        return b"".join(chunks)


def test_real_server_raw_clients(server: AppServer, sync_client: sync_redis.Redis, key_prefix: str) -> None:
    """Over a real socket: a good POST, then one whose client leaves half-way, then a good one again."""
    body = orjson.dumps(ok)
    head = f"POST /api/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    first = _raw_post(server.port, head + "X-Request-ID: raw-1\r\n\r\n", body)
    assert first.startswith(b"HTTP/1.1 202") and b"x-request-id: raw-1" in first.lower()

    half = "POST /api/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    gone = _raw_post(server.port, half, body[:10], close_early=True)
    assert not gone.startswith(b"HTTP/1.1 5"), gone[:200]

    again = _raw_post(server.port, head + "\r\n", orjson.dumps(ok | {"value": 2.5}))
    assert again.startswith(b"HTTP/1.1 202")
    latest = orjson.loads(sync_client.hget(f"{key_prefix}latest", "pump-1/t") or b"{}")
    assert latest["value"] == 2.5
    hour = {"device": "pump-1", "metric": "t", "from": str(ok["ts"]), "to": str(ok["ts"]), "step": "1h"}
    [series] = httpx.get(server.url + "/api/metrics/series", params=hour).json()["series"]
    assert [row[4] for row in series["points"]] == [2], "the abandoned body stored nothing"


async def test_both_doors_count_against_one_window(make_settings: Callable[..., Settings]) -> None:
    """JSON (the fast path: token lookup and count in one round trip) and forms (Quart) share the limit."""
    application = create_app(secure_settings(make_settings, write_rate_limit=3, write_rate_window=30))
    async with application.test_app():
        client = application.test_client()
        device = bearer(await make_token(client, "device", devices=["pump-1"]))
        form = {"device": "pump-1", "metric": "t", "value": "2"}
        assert (await client.post("/api/metrics", json=ok, headers=device)).status_code == 202
        assert (await client.post("/api/metrics", form=form, headers=device)).status_code == 202
        # A server that lost its script cache (a restart): the count still happens, once.
        services_of(application).guard.rate.script.sha = "0" * 40
        assert (await client.post("/api/metrics", json=ok, headers=device)).status_code == 202
        assert (await client.post("/api/metrics", form=form, headers=device)).status_code == 429
        assert (await client.post("/api/metrics", json=ok, headers=device)).status_code == 429

"""Security against real server processes: hypercorn, httpx, httpx-sse.

Revocation ends open streams; a session about to end gets ``reauth``; the
stream limit per token; the write rate limit holds across two processes; a
role-by-endpoint matrix over real HTTP; XSS in the htmx stream flavour;
``livedash run`` starts secure; production refuses to start without a key.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from app.storage.embedded import EmbeddedServer

from .servers import ROOT, AppServer, free_port
from .sse_client import Stream, open_stream, payload
from .waiting import wait_until

ADMIN_TOKEN = "bootstrap-admin-token-for-e2e-0123456789"
SECURE_ENV = {
    "LIVEDASH_AUTH": "on",
    "SECRET_KEY": "e2e-secret-key-0123456789abcdef0123456789",
    "LIVEDASH_ADMIN_TOKEN": ADMIN_TOKEN,
    "LIVEDASH_AUTH_RECHECK_INTERVAL": "0.5",
}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_token(base: str, role: str, **extra: object) -> str:
    response = httpx.post(f"{base}/api/tokens", json={"role": role, **extra}, headers=ADMIN, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


async def ends(stream: Stream, within: float = 5) -> None:
    """The server ends the stream; nothing but keep-alives comes before the end."""
    with pytest.raises(StopAsyncIteration):
        while True:
            assert (await stream.next(within)).event == "ping"


@pytest.fixture
def secure(start_server: Callable[..., AppServer]) -> Callable[..., AppServer]:
    def start(**env: str) -> AppServer:
        return start_server(**{**SECURE_ENV, **env})

    return start


# What each role gets at each door: 2xx/4xx-other means allowed (the request
# reached the route), 401/403 are the auth layer's answers.
MATRIX: list[tuple[str, str, object | None, dict[str, int]]] = [
    ("GET", "/api/metrics/latest", None, {"none": 401, "viewer": 200, "editor": 200, "admin": 200, "device": 403}),
    ("GET", "/api/events", None, {"none": 401, "viewer": 200, "editor": 200, "admin": 200, "device": 403}),
    ("GET", "/api/annotations", None, {"none": 401, "viewer": 200, "editor": 200, "admin": 200, "device": 403}),
    ("GET", "/api/alerts/rules", None, {"none": 401, "viewer": 200, "editor": 200, "admin": 200, "device": 403}),
    ("GET", "/api/presence?room=dashboard", None, {"none": 401, "viewer": 200, "admin": 200, "device": 403}),
    (
        "POST",
        "/api/metrics",
        {"device": "pump-1", "metric": "t", "value": 1},
        {"none": 401, "viewer": 403, "editor": 403, "admin": 202, "device": 202},
    ),
    (
        "POST",
        "/api/annotations",
        {"device": "pump-1", "text": "x"},
        {"none": 401, "viewer": 403, "editor": 201, "admin": 201, "device": 403},
    ),
    (
        "POST",
        "/api/alerts/rules",
        {"device": "pump-1", "metric": "t", "op": "above", "threshold": 5},
        {"none": 401, "viewer": 403, "editor": 403, "admin": 201, "device": 403},
    ),
    ("GET", "/api/tokens", None, {"none": 401, "viewer": 403, "editor": 403, "admin": 200, "device": 403}),
    ("GET", "/api/audit", None, {"none": 401, "viewer": 403, "editor": 403, "admin": 200, "device": 403}),
    ("GET", "/healthz", None, {"none": 200, "viewer": 200, "device": 200}),
]


def test_role_matrix_over_http(secure: Callable[..., AppServer]) -> None:
    server = secure()
    headers = {"none": {}, "admin": ADMIN}
    for role in ("viewer", "editor", "device"):
        headers[role] = bearer(make_token(server.url, role))
    wrong = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for method, path, body, expected in MATRIX:
            for role, status in expected.items():
                got = client.request(method, path, json=body, headers=headers[role]).status_code
                if got != status:
                    wrong.append((method, path, role, status, got))
    assert wrong == [], "(method, path, role, expected, got)"


async def test_revoked_token_ends_its_open_stream(secure: Callable[..., AppServer]) -> None:
    server = secure()
    created = httpx.post(f"{server.url}/api/tokens", json={"role": "viewer"}, headers=ADMIN, timeout=10).json()
    async with open_stream(server.url, headers=bearer(created["token"])) as stream:
        assert (await stream.next()).event == "ready"
        revoked_at = time.monotonic()
        revoke = httpx.post(f"{server.url}/api/tokens/{created['id']}/revoke", headers=ADMIN, timeout=10)
        assert revoke.status_code == 200
        bye = await stream.until("bye", within=5)
        assert bye == []
        assert payload(stream.seen[-1]) == {"reason": "revoked"}
        await ends(stream)
        assert time.monotonic() - revoked_at < 5
    again = httpx.get(f"{server.url}/api/stream", headers=bearer(created["token"]), timeout=10)
    assert again.status_code == 401


async def test_scoped_stream_sees_only_its_topics_across_a_resume(secure: Callable[..., AppServer]) -> None:
    server = secure()
    viewer = bearer(make_token(server.url, "viewer", scope=["device/line2-*"]))

    def post(device: str) -> None:
        reading = {"device": device, "metric": "t", "value": 1}
        assert httpx.post(f"{server.url}/api/metrics", json=reading, headers=ADMIN, timeout=10).status_code == 202

    async with open_stream(server.url, headers=viewer, topics="*") as stream:
        assert (await stream.next()).event == "ready"
        for device in ("line1-a", "line2-a", "line1-b", "line2-b"):
            post(device)
        got = await stream.take(2)
        assert [payload(e)["topic"] for e in got] == ["device/line2-a", "device/line2-b"]
        last = got[0].id
    # Resume from the first line2 event: the replay is scoped too.
    post("line1-c")
    post("line2-c")
    async with open_stream(server.url, headers={**viewer, "Last-Event-ID": last}) as stream:
        assert (await stream.next()).event == "ready"
        got = await stream.take(2)
        assert [payload(e)["topic"] for e in got] == ["device/line2-b", "device/line2-c"]


async def test_session_gets_reauth_before_it_ends_and_renews(secure: Callable[..., AppServer]) -> None:
    server = secure(LIVEDASH_SESSION_TTL="4", LIVEDASH_SESSION_REAUTH_BEFORE="3")
    viewer = make_token(server.url, "viewer")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as browser:
        login = await browser.get(f"/login?token={viewer}")
        assert login.status_code == 303
        page = (await browser.get("/")).text
        match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
        assert match
        cookie = f"livedash_session={browser.cookies['livedash_session']}"
        async with open_stream(server.url, headers={"Cookie": cookie}) as stream:
            assert (await stream.next()).event == "ready"
            await stream.until("reauth", within=4)
            reauth = payload(stream.seen[-1])
            assert reauth["renew"] == "/api/session/renew"
            renewed = await browser.post("/api/session/renew", headers={"X-CSRF-Token": match.group(1)})
            assert renewed.status_code == 200
            assert renewed.json()["expires_at"] > reauth["expires_at"] - 1
        # Without renewing, the session ends and so does its stream.
        async with open_stream(server.url, headers={"Cookie": cookie}) as stream:
            assert (await stream.next()).event == "ready"
            await stream.until("bye", within=8)
            assert payload(stream.seen[-1]) == {"reason": "signed-out"}


async def test_streams_per_token_limit(secure: Callable[..., AppServer]) -> None:
    server = secure(LIVEDASH_STREAMS_PER_TOKEN="2")
    viewer = bearer(make_token(server.url, "viewer"))
    async with open_stream(server.url, headers=viewer) as one, open_stream(server.url, headers=viewer) as two:
        for stream in (one, two):
            assert (await stream.next()).event == "ready"
        # Both are subscribed once an event reaches them.
        reading = {"device": "pump-1", "metric": "t", "value": 1}
        assert httpx.post(f"{server.url}/api/metrics", json=reading, headers=ADMIN, timeout=10).status_code == 202
        for stream in (one, two):
            await stream.take(1)
        third = httpx.get(f"{server.url}/api/stream", headers=viewer, timeout=10)
        assert third.status_code == 429
        assert third.json()["error"] == "too_many_streams" and third.headers["Retry-After"]
        other = bearer(make_token(server.url, "viewer"))
        async with open_stream(server.url, headers=other) as fine:
            assert (await fine.next()).event == "ready"


def test_write_rate_limit_holds_across_two_processes(secure: Callable[..., AppServer]) -> None:
    env = {"LIVEDASH_WRITE_RATE_LIMIT": "4", "LIVEDASH_WRITE_RATE_WINDOW": "60"}
    first, second = secure(**env), secure(**env)
    device = bearer(make_token(first.url, "device"))
    statuses = []
    for i in range(6):
        server = (first, second)[i % 2]
        reading = {"device": "pump-1", "metric": "t", "value": i}
        response = httpx.post(f"{server.url}/api/metrics", json=reading, headers=device, timeout=10)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert statuses == [202, 202, 202, 202, 429, 429]
    latest = httpx.get(f"{second.url}/api/metrics/latest", headers=ADMIN, timeout=10).json()
    assert latest["series"][0]["value"] == 3, "nothing of a refused write is stored"
    big = "x" * (2 * 1024 * 1024)
    too_large = httpx.post(
        f"{first.url}/api/metrics",
        content=b'{"device":"pump-1","metric":"t","value":1,"unit":"' + big.encode() + b'"}',
        headers={**ADMIN, "Content-Type": "application/json"},
        timeout=10,
    )
    assert too_large.status_code in (413, 422)


async def test_html_stream_fragments_escape_payloads(secure: Callable[..., AppServer]) -> None:
    server = secure()
    viewer = bearer(make_token(server.url, "viewer"))
    evil = {"device": "pump-1", "metric": "t", "value": 1, "unit": "<b>x</b>", "tags": {"k": '"><img onerror=x>'}}
    async with open_stream(server.url, headers=viewer, format="html") as stream:
        assert (await stream.next()).event == "ready"
        assert httpx.post(f"{server.url}/api/metrics", json=evil, headers=ADMIN, timeout=10).status_code == 202
        (event,) = await stream.take(1)
        assert event.event == "metric"
        assert "<b>x</b>" not in event.data and "<img" not in event.data
        assert "&lt;b&gt;x&lt;/b&gt;" in event.data


def test_production_start_without_secret_key_refuses(server_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDASH_") and k not in ("SECRET_KEY", "PORT")}
    env.update({**server_env, "LIVEDASH_AUTH": "on"})
    log = tmp_path / "refused.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hypercorn", "app:create_app()", "--bind", f"127.0.0.1:{free_port()}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    # It stops by itself, having served nothing (hypercorn reports a worker whose
    # app factory raised with exit status 0, so the status is not asserted).
    assert code is not None
    assert "SECRET_KEY is not set" in log.read_text()


def test_livedash_run_first_start_is_secure(tmp_path: Path) -> None:
    """The README's run, with no environment at all: auth on, a login link, loopback only."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("LIVEDASH_") and k not in ("SECRET_KEY", "REDIS_URL")
    }
    env.pop("PORT", None)
    port = free_port()
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--port", str(port), "--data-dir", str(data_dir), "--no-demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        pattern = re.compile(r"log in: (http://\S+)")

        def login_url() -> str:
            return next((m.group(1) for m in map(pattern.search, lines) if m), "")

        url = wait_until(login_url, timeout=60, what="the login URL on livedash run's output")
        assert url.startswith(f"http://127.0.0.1:{port}/login?token=ldt_")
        key = data_dir / "secret_key"
        assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600

        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout=30, what="livedash run to answer")
        assert httpx.get(f"http://127.0.0.1:{port}/api/metrics/latest", timeout=5).status_code == 401
        login = httpx.get(url, timeout=5)
        assert login.status_code == 303 and "livedash_session=" in login.headers["Set-Cookie"]
        listening = {
            conn.laddr.ip
            for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            for conn in p.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
        }
        assert listening == {"127.0.0.1"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
        # Whatever happened above, leave no embedded server behind.
        leftover = EmbeddedServer(data_dir)
        if leftover.ping():
            leftover.stop()
    assert not any("AUTHENTICATION IS DISABLED" in line for line in lines)


def browser_login(base: str, token: str) -> tuple[str, str]:
    """Log in with a token link as a browser does: the session cookie header and the page's CSRF token."""
    with httpx.Client(base_url=base, timeout=10) as browser:
        assert browser.get(f"/login?token={token}").status_code == 303
        match = re.search(r'<meta name="csrf-token" content="([^"]+)">', browser.get("/").text)
        assert match
        return f"livedash_session={browser.cookies['livedash_session']}", match.group(1)


def test_rotating_the_admin_token_ends_its_sessions(secure: Callable[..., AppServer]) -> None:
    first = secure()
    cookie, csrf = browser_login(first.url, ADMIN_TOKEN)
    assert httpx.get(f"{first.url}/api/tokens", headers={"Cookie": cookie}, timeout=10).status_code == 200
    first.stop()
    # The operator rotates LIVEDASH_ADMIN_TOKEN and restarts (same Redis, same SECRET_KEY).
    rotated = secure(LIVEDASH_ADMIN_TOKEN="rotated-bootstrap-admin-token-0123456789")
    with httpx.Client(base_url=rotated.url, timeout=10, headers={"Cookie": cookie}) as old:
        assert old.get("/api/tokens").status_code == 401
        assert old.get("/api/session").status_code == 401
        assert old.post("/api/session/renew", headers={"X-CSRF-Token": csrf}).status_code == 401
    rotated.stop()
    # A restart that keeps the token keeps its sessions: the session is bound to the token, not the process.
    same = secure()
    assert httpx.get(f"{same.url}/api/tokens", headers={"Cookie": cookie}, timeout=10).status_code == 200


async def test_revoking_a_token_ends_its_sessions_and_their_streams(secure: Callable[..., AppServer]) -> None:
    server = secure()
    created = httpx.post(f"{server.url}/api/tokens", json={"role": "viewer"}, headers=ADMIN, timeout=10).json()
    cookie, csrf = browser_login(server.url, created["token"])
    async with open_stream(server.url, headers={"Cookie": cookie}) as stream:
        assert (await stream.next()).event == "ready"
        assert httpx.post(f"{server.url}/api/tokens/{created['id']}/revoke", headers=ADMIN, timeout=10).is_success
        await stream.until("bye", within=5)
        assert payload(stream.seen[-1]) == {"reason": "revoked"}
        await ends(stream)
    assert httpx.get(f"{server.url}/api/session", headers={"Cookie": cookie}, timeout=10).status_code == 401
    renew = httpx.post(f"{server.url}/api/session/renew", headers={"Cookie": cookie, "X-CSRF-Token": csrf}, timeout=10)
    assert renew.status_code == 401


def test_bogus_tokens_cannot_flush_the_audit_log(
    secure: Callable[..., AppServer], sync_client: redis.Redis, key_prefix: str
) -> None:
    """A few hundred requests with bogus tokens, against a small log and limit (the finding was 10,100 vs 10,000)."""
    server = secure(LIVEDASH_AUDIT_MAXLEN="100", LIVEDASH_AUTH_FAILURE_LIMIT="20", LIVEDASH_AUDIT_REFUSALS_MAXLEN="50")
    created = httpx.post(f"{server.url}/api/tokens", json={"role": "viewer"}, headers=ADMIN, timeout=10).json()
    bogus = [f"ldt_bogus-{i:04d}-{os.urandom(8).hex()}" for i in range(400)]
    statuses: dict[int, int] = {}
    # A connection each, like a flood from scripts (a POST refused before its body is read may close a
    # kept-alive connection just as the next request goes out on it).
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.url, timeout=10, limits=no_keepalive) as client:
        for i, token in enumerate(bogus):
            match i % 4:
                case 0:  # the ingest fast path
                    reading = {"device": "pump-1", "metric": "t", "value": i}
                    response = client.post("/api/metrics", json=reading, headers=bearer(token))
                case 1:
                    response = client.get("/api/metrics/latest", headers=bearer(token))
                case 2:
                    response = client.get("/login", params={"token": token})
                case _:
                    response = client.post("/login", data={"token": token})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 429:
                assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert statuses == {401: 20, 429: 380}, "the source gets 429 past its failure limit"
        # Security entries survive; a valid token from the same address still works.
        entries = client.get("/api/audit", params={"limit": 1000}, headers=ADMIN).json()["entries"]
        assert [e["token"] for e in entries if e["action"] == "token-created"] == [created["id"]]
        refusals = client.get("/api/audit", params={"kind": "refusals", "limit": 1000}, headers=ADMIN).json()
    # Sampled per source and kind (the 1st, 2nd, 4th, ... of each), not one entry per refusal.
    sampled = refusals["entries"]
    assert 0 < len(sampled) <= 20 and {e["source"] for e in sampled} == {"127.0.0.1"}
    assert {e["action"] for e in sampled} == {"bad-token", "login-failed"}
    assert max(e["count"] for e in sampled if e["action"] == "bad-token") == 128
    # No key per bogus token: nothing under this test's prefix names one.
    keys = [k.decode() for k in sync_client.scan_iter(match=key_prefix + "*", count=1000)]
    hashes = {hashlib.sha256(t.encode()).hexdigest() for t in bogus}
    assert not [k for k in keys if k.rsplit(":", 1)[-1] in hashes]
    assert len(keys) < 20, keys

"""Security, in process: credentials, roles, scopes, CSRF, headers, escaping, limits.

The Quart test client (``app.test_app()`` runs the lifecycle). Real server
processes (streams ending on revocation, reauth, limits across processes,
the role matrix over real HTTP, ``livedash run``) are in test_security_e2e.py.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from markupsafe import escape
from quart import Quart
from redis.asyncio import Redis

from app import create_app
from app.auth import access
from app.auth.access import Identity, ScopedTopics
from app.auth.revocation import recheck_once
from app.auth.sessions import SessionStore
from app.auth.tokens import Role, TokenCreate, TokenStore, bootstrap_fingerprint
from app.cli import first_start
from app.events.hub import Hub
from app.events.sse import control_frame
from app.events.topics import TopicFilter
from app.settings import Settings
from app.storage.keyspace import Keys
from app.web import routing

from .types import QuartClient

ADMIN_TOKEN = "bootstrap-admin-token-for-tests-0123456789"
SECRET = "test-secret-key-0123456789abcdef0123456789"
XSS = ['<script>alert("x")</script>', '"><img src=x onerror=alert(1)>', "</script><script>alert(2)</script>"]


def secure_settings(make_settings: Callable[..., Settings], **overrides: object) -> Settings:
    values: dict[str, object] = {"auth": "on", "secret_key": SECRET, "admin_token": ADMIN_TOKEN}
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
async def secure_app(make_settings: Callable[..., Settings]) -> AsyncIterator[Quart]:
    application = create_app(secure_settings(make_settings, write_rate_limit=1000))
    async with application.test_app():
        yield application


@pytest.fixture
def sclient(secure_app: Quart) -> QuartClient:
    return secure_app.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer(ADMIN_TOKEN)


async def make_token(client: QuartClient, role: str, **extra: Any) -> str:
    response = await client.post("/api/tokens", json={"role": role, "name": f"{role}-t", **extra}, headers=ADMIN)
    assert response.status_code == 201, await response.get_data(as_text=True)
    body = await response.get_json()
    return str(body["token"])


async def reading(client: QuartClient, headers: dict[str, str], device: str, value: float = 1.0) -> int:
    response = await client.post(
        "/api/metrics", json={"device": device, "metric": "t", "value": value}, headers=headers
    )
    return response.status_code


async def login(client: QuartClient, token: str) -> str:
    """Open a browser session with the token link; the CSRF token from the page."""
    response = await client.get(f"/login?token={token}")
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and token not in cookie
    page = await client.get("/")
    assert page.status_code == 200
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', await page.get_data(as_text=True))
    assert match, "the page carries the session's CSRF token"
    return match.group(1)


def test_every_route_has_an_access_rule(make_settings: Callable[..., Settings]) -> None:
    application = create_app(secure_settings(make_settings))
    endpoints = {rule.endpoint for rule in application.url_map.iter_rules()}
    undeclared = endpoints - set(routing.declarations())
    assert undeclared == set(), f"declare these routes with @route (app/web/routing.py), access included: {undeclared}"
    # Fail closed: what nobody declared (or no route at all) needs an admin.
    assert access.allowed_roles("nobody.declared_this") == access.ADMIN
    assert access.allowed_roles(None) == access.ADMIN


def test_production_refuses_to_start_without_a_secret_key(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(make_settings(auth="on", secret_key=None))


async def test_no_or_bad_credentials_are_401(sclient: QuartClient) -> None:
    for headers in ({}, bearer("ldt_not-a-real-token-at-all-xxxxxxxx"), {"Authorization": "Basic abc"}):
        response = await sclient.get("/api/metrics/latest", headers=headers)
        assert response.status_code == 401, headers
        assert (await response.get_json())["error"] in ("unauthorized", "bad_credentials")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # Public doors stay open; pages send browsers to the login form.
    assert (await sclient.get("/healthz")).status_code == 200
    page = await sclient.get("/series/pump-1/t", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["Location"].startswith("/login?next=/series/pump-1/t")


async def test_roles(sclient: QuartClient) -> None:
    viewer, editor, device = [bearer(await make_token(sclient, r)) for r in ("viewer", "editor", "device")]
    note = {"device": "pump-1", "text": "bearing replaced"}
    rule = {"device": "pump-1", "metric": "t", "op": "above", "threshold": 80}
    assert (await sclient.post("/api/annotations", json=note, headers=viewer)).status_code == 403
    assert (await sclient.post("/api/annotations", json=note, headers=editor)).status_code == 201
    assert (await sclient.post("/api/alerts/rules", json=rule, headers=editor)).status_code == 403
    denied = await sclient.get("/api/stream", headers=device)
    assert denied.status_code == 403 and (await denied.get_json())["error"] == "wrong_role"
    assert (await sclient.get("/api/metrics/latest", headers=device)).status_code == 403
    assert await reading(sclient, viewer, "pump-1") == 403
    assert await reading(sclient, device, "pump-1") == 202
    assert (await sclient.get("/api/tokens", headers=editor)).status_code == 403
    assert (await sclient.get("/api/metrics/latest", headers=viewer)).status_code == 200


async def test_device_token_posts_only_for_its_devices(sclient: QuartClient) -> None:
    device = bearer(await make_token(sclient, "device", devices=["pump-1", "pump-2"]))
    assert await reading(sclient, device, "pump-1") == 202
    assert await reading(sclient, device, "fan-9") == 403
    batch = [{"device": "pump-2", "metric": "t", "value": 5}, {"device": "fan-9", "metric": "t", "value": 6}]
    response = await sclient.post("/api/metrics", json=batch, headers=device)
    assert response.status_code == 403 and (await response.get_json())["error"] == "out_of_scope"
    latest = await (await sclient.get("/api/metrics/latest", headers=ADMIN)).get_json()
    assert {r["device"] for r in latest["series"]} == {"pump-1"}, "nothing of the refused batch was stored"


async def test_scoped_polling_and_snapshots_show_only_the_scope(sclient: QuartClient) -> None:
    viewer = bearer(await make_token(sclient, "viewer", scope=["device/line2-*"]))
    cursor = (await (await sclient.get("/api/metrics/latest", headers=ADMIN)).get_json())["cursor"]
    for dev in ("line1-a", "line2-a", "line1-b", "line2-b"):
        assert await reading(sclient, ADMIN, dev) == 202
    polled = await (await sclient.get(f"/api/events?since={cursor}&topics=*", headers=viewer)).get_json()
    assert [(e["type"], e["topic"]) for e in polled["events"]] == [
        ("metric", "device/line2-a"),
        ("metric", "device/line2-b"),
    ]
    # Asking for a topic outside the scope explicitly gives nothing, not an error.
    outside = await (await sclient.get(f"/api/events?since={cursor}&topics=device/line1-a", headers=viewer)).get_json()
    assert outside["events"] == []
    # Resuming mid-way (since = the first line2 event) still only shows the scope.
    resumed = await (await sclient.get(f"/api/events?since={polled['events'][0]['id']}", headers=viewer)).get_json()
    assert [e["topic"] for e in resumed["events"]] == ["device/line2-b"]
    latest = await (await sclient.get("/api/metrics/latest", headers=viewer)).get_json()
    assert sorted(r["device"] for r in latest["series"]) == ["line2-a", "line2-b"]
    assert (await sclient.get("/series/line1-a/t", headers=viewer)).status_code == 403


async def test_presence_only_for_allowed_rooms(sclient: QuartClient) -> None:
    viewer = bearer(await make_token(sclient, "viewer", scope=["device/line2-*"]))
    beat = {"session": "tab-0123456789", "user": "ann"}
    ok = await sclient.post("/api/presence", json={**beat, "room": "device:line2-a"}, headers=viewer)
    assert ok.status_code == 200
    for room in ("device:line1-a", "dashboard"):
        response = await sclient.post("/api/presence", json={**beat, "room": room}, headers=viewer)
        assert response.status_code == 403, room
        assert (await sclient.get(f"/api/presence?room={room}", headers=viewer)).status_code == 403
    assert (await sclient.get("/api/presence?room=device:line2-a", headers=viewer)).status_code == 200


async def test_cookie_session_needs_csrf_on_writes(sclient: QuartClient) -> None:
    editor = await make_token(sclient, "editor")
    csrf = await login(sclient, editor)
    note = {"device": "pump-1", "text": "from the browser"}
    refused = await sclient.post("/api/annotations", json=note)
    assert refused.status_code == 403 and (await refused.get_json())["error"] == "csrf"
    wrong = await sclient.post("/api/annotations", json=note, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    assert (await sclient.post("/api/annotations", json=note, headers={"X-CSRF-Token": csrf})).status_code == 201
    who = await (await sclient.get("/api/session")).get_json()
    assert who["role"] == "editor" and who["via"] == "cookie"
    renewed = await sclient.post("/api/session/renew", headers={"X-CSRF-Token": csrf})
    assert renewed.status_code == 200 and (await renewed.get_json())["expires_at"] > 0
    # Logging out ends the session server-side: the cookie is worthless after.
    assert (await sclient.post("/logout", headers={"X-CSRF-Token": csrf})).status_code == 303
    assert (await sclient.get("/api/metrics/latest")).status_code == 401


async def test_bad_token_link_is_refused_and_audited(sclient: QuartClient) -> None:
    response = await sclient.get("/login?token=ldt_wrong-wrong-wrong-wrong-wrong")
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers
    assert (await sclient.get("/login?token=x&next=https://evil.example/")).status_code == 401
    viewer = await make_token(sclient, "viewer")
    response = await sclient.get(f"/login?token={viewer}&next=//evil.example/x")
    assert response.headers["Location"] == "/", "never an open redirect"
    entries = (await (await sclient.get("/api/audit", headers=ADMIN)).get_json())["entries"]
    actions = [e["action"] for e in entries]
    assert "login" in actions and "token-created" in actions
    refusals = (await (await sclient.get("/api/audit?kind=refusals", headers=ADMIN)).get_json())["entries"]
    assert [e["action"] for e in refusals] == ["login-failed", "login-failed"]
    assert [e["count"] for e in refusals] == [2, 1], "counted per source; the 1st and 2nd are sampled"
    assert all(viewer not in str(e) for e in entries + refusals), "the audit log never holds a token"
    assert (await sclient.get("/api/audit?kind=everything", headers=ADMIN)).status_code == 400


async def test_security_headers(sclient: QuartClient) -> None:
    viewer = await make_token(sclient, "viewer")
    await login(sclient, viewer)
    for path in ("/", "/login", "/api/metrics/latest"):
        response = await sclient.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"]
    page = await (await sclient.get("/")).get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "no inline script on the page"


async def test_token_api_never_shows_secrets(sclient: QuartClient) -> None:
    created = await (
        await sclient.post("/api/tokens", json={"role": "viewer", "scope": ["device/a-*"]}, headers=ADMIN)
    ).get_json()
    token = created["token"]
    assert created["login_url"].endswith(f"/login?token={token}")
    listed = await (await sclient.get("/api/tokens", headers=ADMIN)).get_json()
    assert [t["id"] for t in listed["tokens"]] == [created["id"]]
    assert token not in str(listed)
    assert (await sclient.get("/api/session", headers=bearer(token))).status_code == 200
    assert (await sclient.post(f"/api/tokens/{created['id']}/revoke", headers=ADMIN)).status_code == 200
    assert (await sclient.get("/api/session", headers=bearer(token))).status_code == 401
    assert (await sclient.post("/api/tokens/000000000000/revoke", headers=ADMIN)).status_code == 404
    bad = await sclient.post("/api/tokens", json={"role": "root"}, headers=ADMIN)
    assert bad.status_code == 422


async def test_write_rate_limit(make_settings: Callable[..., Settings]) -> None:
    application = create_app(secure_settings(make_settings, write_rate_limit=3, write_rate_window=30))
    async with application.test_app():
        client = application.test_client()
        device = bearer(await make_token(client, "device"))
        assert [await reading(client, device, "pump-1", v) for v in (1, 2, 3)] == [202, 202, 202]
        refused = await client.post(
            "/api/metrics", json={"device": "pump-1", "metric": "t", "value": 4}, headers=device
        )
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 30
        latest = await (await client.get("/api/metrics/latest", headers=ADMIN)).get_json()
        assert latest["series"][0]["value"] == 3, "the refused write stored nothing"


def _inert(text: str, payload: str) -> None:
    assert payload not in text, f"raw payload rendered: {payload}"


async def test_stored_xss_is_escaped_on_every_server_rendered_path(sclient: QuartClient) -> None:
    editor = await make_token(sclient, "editor")
    csrf = await login(sclient, editor)
    hx = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    created = await sclient.post(
        "/api/annotations",
        json={"device": "pump-1", "text": XSS[0] + XSS[2], "tags": [XSS[1][:30]], "author": XSS[1][:60]},
        headers=hx,
    )
    assert created.status_code == 201
    editor_html = await created.get_data(as_text=True)
    note = await (await sclient.get("/api/annotations", headers={"Accept": "application/json"})).get_json()
    doc = note["annotations"][0]
    page = await (await sclient.get("/")).get_data(as_text=True)
    fragment = await (await sclient.get(f"/fragments/note/{doc['id']}")).get_data(as_text=True)
    moved = await sclient.post(f"/api/annotations/{doc['id']}", json={"text": XSS[2]}, headers=hx)
    assert moved.status_code == 200
    conflict = await sclient.post(
        f"/api/annotations/{doc['id']}", form={"text": XSS[1], "version": "1", "author": XSS[0][:60]}, headers=hx
    )
    assert conflict.status_code == 409
    conflict_html = await conflict.get_data(as_text=True)
    for text in (editor_html, page, fragment, conflict_html):
        for payload in XSS:
            _inert(text, payload)
            _inert(text, payload[:30])
    assert str(escape(XSS[0])) in page, "the text is shown as typed"
    assert str(escape(XSS[1])) in conflict_html


async def test_scoped_editor_cannot_touch_notes_outside_its_scope(sclient: QuartClient) -> None:
    admin_note = await sclient.post(
        "/api/annotations", json={"device": "line1-a", "ts": 1_790_000_000_000, "text": "theirs"}, headers=ADMIN
    )
    note = await admin_note.get_json()
    editor = bearer(await make_token(sclient, "editor", scope=["device/line2-*"]))
    path = f"/api/annotations/{note['id']}"
    # Out of scope reads as absent: no fetch, no revisions, no update, no delete.
    assert (await sclient.get(path, headers=editor)).status_code == 404
    assert (await sclient.get(path + "/revisions", headers=editor)).status_code == 404
    assert (await sclient.post(path, json={"text": "mine"}, headers=editor)).status_code == 404
    assert (await sclient.post(path + "/delete", headers=editor)).status_code == 404
    stored = await (await sclient.get(path, headers=ADMIN)).get_json()
    assert (stored["text"], stored["version"]) == ("theirs", 1)


async def test_scoped_viewer_sees_only_its_rules_states_and_note_fragments(sclient: QuartClient) -> None:
    for device in ("line1-a", "line2-a"):
        rule = await sclient.post(
            "/api/alerts/rules", json={"device": device, "metric": "t", "op": "above", "threshold": 1}, headers=ADMIN
        )
        assert rule.status_code == 201
    note = await (
        await sclient.post(
            "/api/annotations", json={"device": "line1-a", "ts": 1_790_000_000_000, "text": "x"}, headers=ADMIN
        )
    ).get_json()
    viewer = bearer(await make_token(sclient, "viewer", scope=["device/line2-*"]))
    states = (await (await sclient.get("/api/alerts/state", headers=viewer)).get_json())["states"]
    rules = (await (await sclient.get("/api/alerts/rules", headers=ADMIN)).get_json())["rules"]
    assert set(states) == {r["id"] for r in rules if r["device"] == "line2-a"}
    assert (await sclient.get(f"/fragments/note/{note['id']}", headers=viewer)).status_code == 404
    assert (await sclient.get(f"/fragments/note/{note['id']}", headers=ADMIN)).status_code == 200


async def test_recheck_ends_sessions_of_a_rotated_admin_token(redis_url: str, key_prefix: str) -> None:
    """A session opened with LIVEDASH_ADMIN_TOKEN carries its fingerprint: live only while it is the current one."""
    redis = Redis.from_url(redis_url)
    try:
        keys = Keys(key_prefix)
        current = bootstrap_fingerprint(ADMIN_TOKEN, SECRET)
        rotated = bootstrap_fingerprint("an-admin-token-since-rotated-0123456789", SECRET)
        assert current != rotated and current != bootstrap_fingerprint(ADMIN_TOKEN, "another-secret-key-0123456789")
        tokens, sessions, hub = (
            TokenStore(redis, keys, bootstrap=current),
            SessionStore(redis, keys, SECRET, 3600),
            Hub(16),
        )
        subs = {}
        for name, fingerprint in (("current", current), ("rotated", rotated)):
            session = await sessions.open(fingerprint, None)
            identity = Identity(Role.ADMIN, "bootstrap", name, fingerprint, session_id=session.id)
            subs[name] = hub.subscribe(ScopedTopics(TopicFilter(()), identity, stream=True), cancel_on_overflow=False)
        assert await recheck_once(tokens, sessions, hub, reauth_before=1) == 1
        assert subs["rotated"].drain() == [control_frame("bye", {"reason": "revoked"})]
        assert subs["current"].drain() == [] and not subs["current"].closed
    finally:
        await redis.aclose()


async def test_failed_logins_are_limited_per_address(make_settings: Callable[..., Settings]) -> None:
    application = create_app(secure_settings(make_settings, auth_failure_limit=3, auth_failure_window=30))
    async with application.test_app():
        client = application.test_client()
        viewer = await make_token(client, "viewer")
        statuses = []
        for i in range(6):
            form = {"token": f"ldt_wrong-wrong-wrong-wrong-{i:04d}", "next": "/"}
            statuses.append((await client.post("/login", form=form)).status_code)
        assert statuses == [401, 401, 401, 429, 429, 429]
        refused = await client.get("/login?token=ldt_wrong-wrong-wrong-wrong-link")
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 30
        assert "Too many failed logins" in await refused.get_data(as_text=True)
        bad_bearer = await client.get("/api/metrics/latest", headers=bearer("ldt_wrong-wrong-wrong-wrong-api"))
        assert bad_bearer.status_code == 429 and (await bad_bearer.get_json())["error"] == "too_many_failures"
        # Only failures are limited: a good token from the same address still gets in.
        assert (await client.get(f"/login?token={viewer}")).status_code == 303
        assert (await client.get("/api/metrics/latest", headers=ADMIN)).status_code == 200


async def test_no_tokens_over_http_while_auth_is_off(
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with caplog.at_level(logging.WARNING, logger="livedash.auth"):
        application = create_app(make_settings(auth="off"))
    assert "POST /api/tokens is refused" in caplog.text, "the start-up warning says so"
    async with application.test_app():
        client = application.test_client()
        for body in ({"role": "admin"}, {"role": "viewer", "name": "x"}):
            refused = await client.post("/api/tokens", json=body)
            assert refused.status_code == 403
            error = await refused.get_json()
            assert error["error"] == "auth_off" and "LIVEDASH_AUTH=off" in error["detail"]
            assert "livedash token create" in error["detail"]
        form = await client.post("/api/tokens", form={"role": "admin"})
        assert form.status_code == 403
        assert (await (await client.get("/api/tokens")).get_json())["tokens"] == [], "nothing was made"
        # The console talks to Redis itself and stays the way to make one.
        settings = application.extensions["livedash"].settings
        monkeypatch.setenv("REDIS_URL", str(settings.redis_url))
        monkeypatch.setenv("LIVEDASH_KEY_PREFIX", settings.key_prefix)
        monkeypatch.setenv("LIVEDASH_AUTH", "off")
        args = argparse.Namespace(role="viewer", name="console", scope=None, devices=None, expires_in=None)
        assert await asyncio.to_thread(first_start.cmd_token_create, args) == 0
        assert "created" in capsys.readouterr().out
        listed = (await (await client.get("/api/tokens")).get_json())["tokens"]
        assert [(t["role"], t["name"]) for t in listed] == [("viewer", "console")]


async def mint(client: QuartClient, headers: dict[str, str], **spec: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/api/tokens", json=spec, headers=headers)
    return response.status_code, await response.get_json()


async def test_a_scoped_admin_mints_only_within_its_scope(sclient: QuartClient) -> None:
    scoped = bearer(await make_token(sclient, "admin", scope=["device/line-2-*"]))
    refused: list[dict[str, Any]] = [
        {"role": "admin"},  # unscoped: everything
        {"role": "viewer", "scope": ["*"]},
        {"role": "viewer", "scope": ["device/line-*"]},  # wider
        {"role": "viewer", "scope": ["device/*-2-a"]},  # overlaps, but also matches device/line-9-2-a
        {"role": "viewer", "scope": ["device/line-2-a", "device/line-3-a"]},
        {"role": "viewer", "scope": ["room/device:line-2-a"]},  # shown with device/line-2-a, not inferred
    ]
    for spec in refused:
        status, body = await mint(sclient, scoped, **spec)
        assert (status, body["error"]) == (403, "out_of_scope"), spec
        assert "scope" in body["detail"] and "device/line-2-*" in body["detail"], body
    status, body = await mint(sclient, scoped, role="viewer", scope=["device/line-2-a", "device/line-3-a"])
    assert "device/line-3-a" in body["detail"] and "device/line-2-a'" not in body["detail"], "names what is outside"
    allowed = [["device/line-2-*"], ["device/line-2-a"], ["device/line-2-b*", "device/line-2-*-x"]]
    for scope in allowed:
        status, body = await mint(sclient, scoped, role="admin", scope=scope)
        assert status == 201, (scope, body)
        assert body["scope"] == scope
    # What it made is bounded too: its own tokens can only narrow further.
    narrower = bearer(body["token"])
    status, body = await mint(sclient, narrower, role="viewer", scope=["device/line-2-a"])
    assert (status, body["error"]) == (403, "out_of_scope")
    assert (await mint(sclient, narrower, role="viewer", scope=["device/line-2-b1"]))[0] == 201
    # The unscoped bootstrap admin is not bounded.
    assert (await mint(sclient, ADMIN, role="admin"))[0] == 201


async def test_a_device_limited_admin_mints_only_for_its_devices(sclient: QuartClient) -> None:
    limited = bearer(await make_token(sclient, "admin", devices=["pump-1", "pump-2"]))
    for spec in ({"role": "device"}, {"role": "device", "devices": ["pump-1", "fan-9"]}):
        status, body = await mint(sclient, limited, **spec)
        assert (status, body["error"]) == (403, "out_of_scope"), spec
        assert "devices" in body["detail"] or "fan-9" in body["detail"]
    assert (await mint(sclient, limited, role="device", devices=["pump-2"]))[0] == 201
    assert (await mint(sclient, limited, role="viewer", devices=["pump-1"]))[0] == 201


def test_mint_refusal_never_a_higher_role() -> None:
    def identity(role: Role) -> Identity:
        return Identity(role=role, token_id="t", name="t", token_hash="h")

    for caller, allowed in (
        (Role.VIEWER, {Role.VIEWER}),
        (Role.EDITOR, {Role.VIEWER, Role.EDITOR}),
        (Role.ADMIN, {Role.VIEWER, Role.EDITOR, Role.ADMIN, Role.DEVICE, Role.METRICS}),
        (Role.DEVICE, {Role.DEVICE}),
        (Role.METRICS, {Role.METRICS}),
    ):
        for role in Role:
            refusal = access.mint_refusal(identity(caller), TokenCreate(role=role))
            if role in allowed:
                assert refusal is None, (caller, role)
            else:
                assert refusal is not None and refusal[0] == "role_too_high", (caller, role)
                assert f"a {caller} credential cannot make a {role} token" == refusal[1]


def test_pattern_within_is_sound() -> None:
    """Whenever pattern_within says yes, every topic the requested pattern matches is matched by the allowed one."""
    alphabet = ["a", "b", "-", "*"]
    patterns = ["".join(p) for n in range(1, 5) for p in itertools.product(alphabet, repeat=n)]
    topics = ["".join(p) for n in range(0, 6) for p in itertools.product("ab-", repeat=n)]
    matched = {p: {t for t in topics if TopicFilter((p,)).matches(t)} for p in patterns}
    said_yes = 0
    for requested in patterns:
        for allowed in patterns:
            if access.pattern_within(requested, allowed):
                said_yes += 1
                assert matched[requested] <= matched[allowed], (requested, allowed)
    assert said_yes > len(patterns), "and it says yes to more than equal patterns"
    assert access.pattern_within("device/line-2-a*", "device/line-2-*")
    assert not access.pattern_within("device/line-*", "device/line-2-*")


async def test_login_form_refuses_cross_site_posts(sclient: QuartClient) -> None:
    """Login CSRF: another site's page must not sign this browser in (as whoever owns the token it posts)."""
    created = await (await sclient.post("/api/tokens", json={"role": "viewer"}, headers=ADMIN)).get_json()
    ours = created["login_url"].split("/login")[0]  # this server's origin, as the test client reaches it
    form = {"token": created["token"], "next": "/"}
    cross_site = [
        {"Origin": "https://evil.example"},
        {"Origin": "https://evil.example", "Referer": f"{ours}/login"},
        {"Origin": ours.replace("://", "://evil.")},
        {"Origin": "null"},  # any page can make its requests say null
        {"Origin": f"{ours}:1"},
        {"Origin": "http://[bad"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://dash.example"},  # a sibling subdomain is another site
        {"Sec-Fetch-Site": "cross-site", "Origin": ours},
    ]
    for headers in cross_site:
        response = await sclient.post("/login", form=form, headers=headers)
        assert response.status_code == 403, headers
        assert "Set-Cookie" not in response.headers, headers
        body = await response.get_data(as_text=True)
        assert "cross_site_login" in body and "login CSRF" in body, body
    refusals = (await (await sclient.get("/api/audit?kind=refusals", headers=ADMIN)).get_json())["entries"]
    assert {e["action"] for e in refusals} == {"cross-site-login"}
    # Our own form (Origin or Sec-Fetch-Site say so, even with Origin: null under a no-referrer policy),
    # and clients that are not browsers (curl sends neither header), log in.
    same_site = [
        {"Origin": ours},
        {"Origin": ours.upper()},
        {"Sec-Fetch-Site": "same-origin", "Origin": ours},
        {"Sec-Fetch-Site": "same-origin", "Origin": "null"},
        {"Origin": "https://dash.example", "X-Forwarded-Host": "dash.example"},  # behind a proxy that ends TLS
        {},
    ]
    for headers in same_site:
        response = await sclient.post("/login", form=form, headers=headers)
        assert response.status_code == 303, headers
        assert "livedash_session=" in response.headers["Set-Cookie"], headers

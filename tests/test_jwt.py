"""JWTs from an external issuer (issue 18, item 3): HS256, RS256/ES256 by JWKS, claims to roles and scopes.

The JWKS endpoint is a tiny HTTP server on 127.0.0.1 run by the test, whose
keys the test swaps to rotate them. Opaque tokens keep working beside JWTs
(tests/test_security.py runs unchanged).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from quart import Quart
from redis.asyncio import Redis

from app import create_app
from app.auth.access import ScopedTopics
from app.auth.guard import Guard
from app.auth.issuer import JwtVerifier, session_identity
from app.auth.revocation import recheck_once
from app.auth.sessions import SessionStore
from app.auth.tokens import TokenStore
from app.events.hub import Hub
from app.events.sse import control_frame
from app.events.topics import TopicFilter
from app.settings import Settings
from app.storage.keyspace import Keys

from .servers import AppServer
from .sse_client import open_stream, payload
from .test_security import ADMIN, ADMIN_TOKEN, SECRET
from .types import QuartClient
from .waiting import async_wait_until

HS_SECRET = "issuer-shared-secret-0123456789abcdef"
ISSUER = "https://idp.example.test/realms/plant"
AUDIENCE = "livedash"


class Jwks:
    """A JWKS endpoint on 127.0.0.1: serves ``keys`` (swap them to rotate) and counts its reads."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.reads = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.reads += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    endpoint = Jwks()
    yield endpoint
    endpoint.close()


def rsa_key(kid: str) -> tuple[Any, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": kid, "use": "sig", "alg": "RS256"}


def ec_key(kid: str) -> tuple[Any, dict[str, Any]]:
    private = ec.generate_private_key(ec.SECP256R1())
    public: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": kid, "use": "sig", "alg": "ES256"}


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "u-" + uuid.uuid4().hex[:8],
        "name": "Ana Lima",
        "role": "ops",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hs(**extra: Any) -> str:
    return jwt.encode(claims(**extra), HS_SECRET, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jwt_settings(make_settings: Callable[..., Settings], **overrides: object) -> Settings:
    values: dict[str, object] = {
        "auth": "on",
        "secret_key": SECRET,
        "admin_token": ADMIN_TOKEN,
        "write_rate_limit": 1000,
        "jwt_secret": HS_SECRET,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_leeway": 5,
        "jwt_role_map": "ops=editor,watchers=viewer,plant-admins=admin",
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
async def hs_app(make_settings: Callable[..., Settings]) -> AsyncIterator[Quart]:
    application = create_app(jwt_settings(make_settings))
    async with application.test_app():
        yield application


async def refusal(client: QuartClient, token: str) -> tuple[int, str | None]:
    response = await client.get("/api/metrics/latest", headers=bearer(token))
    body = await response.get_json()
    return response.status_code, body.get("reason") if isinstance(body, dict) else None


async def test_hs256_jwt_is_a_caller_and_bad_ones_say_why(hs_app: Quart) -> None:
    client = hs_app.test_client()
    token = hs(sub="ana-1")
    who = await (await client.get("/api/session", headers=bearer(token))).get_json()
    assert (who["role"], who["name"], who["subject"]) == ("editor", "Ana Lima", "jwt:ana-1")
    # An editor by its claims: it writes notes, and they name it.
    note = await client.post("/api/annotations", json={"device": "pump-1", "text": "x"}, headers=bearer(token))
    assert note.status_code == 201
    assert ((await note.get_json())["author"], (await note.get_json())["author_id"]) == ("Ana Lima", "jwt:ana-1")
    rule = {"device": "pump-1", "metric": "t", "op": "above", "threshold": 1}
    assert (await client.post("/api/alerts/rules", json=rule, headers=bearer(token))).status_code == 403

    now = int(time.time())
    none_alg = jwt.encode(claims(), key="", algorithm="none")
    cases = {
        "expired": hs(exp=now - 60, iat=now - 120),
        "not_yet_valid": hs(nbf=now + 120),
        "wrong_issuer": hs(iss="https://elsewhere.example"),
        "wrong_audience": hs(aud="another-service"),
        "bad_signature": jwt.encode(claims(), "not-the-shared-secret-0123456789", algorithm="HS256"),
        "alg_not_allowed": none_alg,
        "missing_claim": hs(exp=None),
        "no_role": hs(role="visitors"),
    }
    got = {reason: await refusal(client, token) for reason, token in cases.items()}
    assert got == {reason: (401, reason) for reason in cases}
    # Within the leeway it is still fine; opaque tokens are untouched.
    assert (await refusal(client, hs(exp=now - 2)))[0] == 200
    assert (await client.get("/api/metrics/latest", headers=ADMIN)).status_code == 200
    assert (await refusal(client, "ldt_not-a-real-token-at-all-xxxxxxxx"))[0] == 401


async def test_claims_map_to_role_and_scope_on_every_read(hs_app: Quart) -> None:
    client = hs_app.test_client()
    for device in ("line1-a", "line2-a"):
        reading = {"device": device, "metric": "t", "value": 1}
        assert (await client.post("/api/metrics", json=reading, headers=ADMIN)).status_code == 202
        note = {"device": device, "text": f"note on {device}"}
        assert (await client.post("/api/annotations", json=note, headers=ADMIN)).status_code == 201
    scoped = bearer(hs(role="watchers", scope="device/line2-*"))
    latest = (await (await client.get("/api/metrics/latest", headers=scoped)).get_json())["series"]
    assert {r["device"] for r in latest} == {"line2-a"}
    notes = (await (await client.get("/api/annotations", headers=scoped)).get_json())["annotations"]
    assert {n["device"] for n in notes} == {"line2-a"}
    events = (await (await client.get("/api/events?since=0-0", headers=scoped)).get_json())["events"]
    assert events and {e["topic"] for e in events} == {"device/line2-a"}
    assert (
        await client.post("/api/annotations", json={"device": "line2-a", "text": "x"}, headers=scoped)
    ).status_code == 403
    rules = {"device": "line1-a", "metric": "t", "op": "above", "threshold": 5}
    assert (await client.post("/api/alerts/rules", json=rules, headers=ADMIN)).status_code == 201
    listed = (await (await client.get("/api/alerts/rules", headers=scoped)).get_json())["rules"]
    assert listed == []
    assert (await client.get("/series/line1-a/t", headers=scoped)).status_code == 403
    assert (await client.get("/api/presence?room=device:line1-a", headers=scoped)).status_code == 403
    assert (await client.get("/api/presence?room=device:line2-a", headers=scoped)).status_code == 200
    # A role list takes the highest mapped role; an unreadable scope is refused, never read as no scope.
    admin = bearer(hs(role=["watchers", "plant-admins"]))
    assert (await client.get("/api/tokens", headers=admin)).status_code == 200
    assert await refusal(client, hs(scope=["device/*", "bad pattern!"])) == (401, "bad_scope")


async def test_a_browser_exchanges_a_jwt_for_a_session(hs_app: Quart) -> None:
    client = hs_app.test_client()
    exp = int(time.time()) + 120
    response = await client.get(f"/login?token={hs(sub='bob-7', name='Bob', exp=exp)}")
    assert response.status_code == 303 and "livedash_session=" in response.headers["Set-Cookie"]
    who = await (await client.get("/api/session")).get_json()
    assert (who["name"], who["subject"], who["role"], who["via"]) == ("Bob", "jwt:bob-7", "editor", "cookie")
    assert who["expires_at"] <= exp * 1000  # the session never outlives the JWT
    refused = await hs_app.test_client().get(f"/login?token={hs(exp=int(time.time()) - 600)}")
    assert refused.status_code == 401
    assert "expired" in await refused.get_data(as_text=True)


async def test_directus_preset(make_settings: Callable[..., Settings]) -> None:
    settings = jwt_settings(
        make_settings,
        jwt_preset="directus",
        jwt_issuer=None,
        jwt_audience=None,
        jwt_role_map="5b8a2c1e-0000-4000-8000-000000000001=editor",
    )
    verifier = JwtVerifier(settings)
    now = int(time.time())

    def directus(**extra: Any) -> str:
        # What Directus's /auth/login access token carries (HS256 with its SECRET).
        body = {"id": "d-user-1", "role": "5b8a2c1e-0000-4000-8000-000000000001", "app_access": True}
        body |= {"admin_access": False, "iat": now, "exp": now + 900, "iss": "directus", **extra}
        return jwt.encode(body, HS_SECRET, algorithm="HS256")

    editor = await verifier.identify(directus())
    assert (editor.role, editor.subject, editor.name) == ("editor", "jwt:d-user-1", "d-user-1")
    admin = await verifier.identify(directus(admin_access=True, role="another-role-id"))
    assert admin.role == "admin"
    application = create_app(settings)
    async with application.test_app():
        client = application.test_client()
        assert await refusal(client, directus(iss="not-directus")) == (401, "wrong_issuer")
        assert (await refusal(client, directus()))[0] == 200


async def test_rs256_and_es256_by_jwks_with_rotation(make_settings: Callable[..., Settings], jwks: Jwks) -> None:
    key1, jwk1 = rsa_key("k1")
    eckey, ecjwk = ec_key("e1")
    jwks.keys = [jwk1, ecjwk]
    settings = jwt_settings(make_settings, jwt_secret=None, jwt_jwks_url=jwks.url, jwks_refresh_interval=0.3)
    application = create_app(settings)
    async with application.test_app():
        client = application.test_client()
        rs = jwt.encode(claims(), key1, algorithm="RS256", headers={"kid": "k1"})
        es = jwt.encode(claims(), eckey, algorithm="ES256", headers={"kid": "e1"})
        assert (await refusal(client, rs))[0] == 200
        assert (await refusal(client, es))[0] == 200
        assert jwks.reads == 1  # cached
        # A key the endpoint does not have: refused, and the JWKS is re-read at most once per interval.
        stranger, _ = rsa_key("k9")
        unknown = jwt.encode(claims(), stranger, algorithm="RS256", headers={"kid": "k9"})
        assert await refusal(client, unknown) == (401, "unknown_kid")
        reads = jwks.reads
        for _ in range(5):
            assert await refusal(client, unknown) == (401, "unknown_kid")
        assert jwks.reads <= reads + 1
        # Signed by another key under a known kid: the signature does not verify.
        forged = jwt.encode(claims(), stranger, algorithm="RS256", headers={"kid": "k1"})
        assert await refusal(client, forged) == (401, "bad_signature")
        # HS256 with the public key as the secret (key confusion) and alg none: not accepted here.
        assert (await refusal(client, hs()))[1] == "alg_not_allowed"
        # Rotation: the issuer starts signing with k2, published at the endpoint; it is picked up.
        key2, jwk2 = rsa_key("k2")
        jwks.keys = [jwk2]
        rotated = jwt.encode(claims(), key2, algorithm="RS256", headers={"kid": "k2"})

        async def accepted() -> bool:
            return (await refusal(client, rotated))[0] == 200

        # Accepted once the refresh interval (0.3 s, the bound under test) has passed since the last read.
        await async_wait_until(accepted, timeout=5, what="the rotated key to be picked up")
        # k1 is gone from the endpoint, and so, after the re-read, from the cache.
        assert await refusal(client, rs) == (401, "unknown_kid")


async def test_a_stream_opened_with_a_jwt_ends_at_its_exp(start_server: Callable[..., AppServer]) -> None:
    server = start_server(
        LIVEDASH_AUTH="on",
        SECRET_KEY=SECRET,
        LIVEDASH_ADMIN_TOKEN=ADMIN_TOKEN,
        LIVEDASH_AUTH_RECHECK_INTERVAL="0.3",
        LIVEDASH_JWT_SECRET=HS_SECRET,
        LIVEDASH_JWT_ISSUER=ISSUER,
        LIVEDASH_JWT_AUDIENCE=AUDIENCE,
        LIVEDASH_JWT_LEEWAY="0",
        LIVEDASH_JWT_ROLE_MAP="ops=editor",
    )
    exp = time.time() + 2
    token = hs(exp=int(exp) + 1)
    async with open_stream(server.url, headers=bearer(token)) as stream:
        assert (await stream.next()).event == "ready"
        await stream.until("bye", within=8)
        assert payload(stream.seen[-1]) == {"reason": "expired"}
        assert time.time() >= int(exp) + 1  # not before its exp
    again = httpx.get(f"{server.url}/api/stream", headers=bearer(token), timeout=10)
    assert again.status_code == 401 and again.json()["reason"] == "expired"


async def test_recheck_ends_jwt_streams_at_exp_not_at_a_renewable_session_end(
    make_settings: Callable[..., Settings], redis_url: str, key_prefix: str
) -> None:
    """A JWT's streams end at its exp; a session made from it ends (or renews) as any session does."""
    settings = jwt_settings(make_settings, session_ttl=60, session_reauth_before=30)
    verifier = JwtVerifier(settings)
    redis = Redis.from_url(redis_url)
    try:
        keys = Keys(key_prefix)
        tokens, sessions, hub = TokenStore(redis, keys), SessionStore(redis, keys, SECRET, 60), Hub(16)
        now = int(time.time())
        live = await verifier.identify(hs(exp=now + 3600))  # outlives the 60 s session: renewable up to it
        past = replace(await verifier.identify(hs()), expires_at=(now - 1) * 1000)  # its exp has just passed
        subs = {}
        for name, identity in (("bearer-live", live), ("bearer-past", past)):
            subs[name] = hub.subscribe(ScopedTopics(TopicFilter(()), identity, stream=True), cancel_on_overflow=False)
        session = await sessions.open(live.token_hash, live.expires_at, session_identity(live))
        # What a request (or a stream) with that session's cookie is: the guard's reading of it.
        in_session = await Guard(settings, redis, keys).from_session(session)
        assert in_session is not None and in_session.session_id == session.id
        subs["session"] = hub.subscribe(
            ScopedTopics(TopicFilter(()), in_session, stream=True), cancel_on_overflow=False
        )
        assert in_session.expires_at == live.expires_at  # the JWT's exp, not the session's 60 s
        # Its session ends in 60 s, within the 90 s reauth window: renewable (to at most exp), not ended.
        assert await recheck_once(tokens, sessions, hub, reauth_before=90) == 1
        assert subs["bearer-past"].drain() == [control_frame("bye", {"reason": "expired"})]
        assert subs["bearer-live"].drain() == [] and not subs["bearer-live"].closed
        reauth = control_frame("reauth", {"expires_at": session.expires_at, "renew": "/api/session/renew"})
        assert subs["session"].drain() == [reauth] and not subs["session"].closed
        await sessions.close(session.id)
        await recheck_once(tokens, sessions, hub, reauth_before=90)
        assert subs["session"].drain() == [control_frame("bye", {"reason": "signed-out"})]
    finally:
        await redis.aclose()

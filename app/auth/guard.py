"""Every door checks: one ``before_request`` layer for authentication and roles.

For each request, in order:

1. find the caller: ``Authorization: Bearer <token>`` (API clients, curl;
   ``LIVEDASH_ADMIN_TOKEN`` is compared in constant time), else the signed
   session cookie a browser got from ``/login``. A bad Bearer token is 401
   even when a cookie is present: a client that sends one means it.
2. allow or refuse by the route's roles (``app/auth/access.py``): no credential is
   401 (only a browser asking for a page, ``Accept: text/html``, is redirected
   to ``/login`` instead; curl, scripts and Prometheus get the 401), a wrong
   role is 403. ``LIVEDASH_METRICS_TOKEN`` is the role ``metrics``, checked
   in process like the admin token (``/metrics`` answers while Redis is down).
3. on a cookie-authenticated write, require the session's CSRF token in
   ``X-CSRF-Token`` (htmx and the page's fetches send it; Bearer clients need
   none: a browser never attaches a Bearer header by itself).
4. count the write against the token's rate limit (``app/auth/ratelimit.py``).

Each refusal is counted against the client's address and only sampled into
the refusal log, apart from the security audit log (``app/auth/audit.py``);
failed credentials past ``LIVEDASH_AUTH_FAILURE_LIMIT`` get 429.

Routes then narrow what they answer with ``visible_topics``, ``require_room``
and ``require_devices``. With ``LIVEDASH_AUTH=off`` every caller is an
anonymous admin and none of this runs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
from collections.abc import Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from quart import Quart, Response, g, request
from redis.asyncio import Redis

from app.auth import tickets
from app.auth.access import (
    ADMIN,
    ANNOTATE,
    ANONYMOUS,
    Identity,
    ScopedTopics,
    allowed_roles,
    csrf_exempt,
    rate_exempt,
)
from app.auth.audit import AuditLog
from app.auth.issuer import JwtRefused, JwtVerifier, identity_from_session, looks_like_jwt
from app.auth.ratelimit import Counted, WriteRateLimit
from app.auth.sessions import COOKIE_NAME, SessionRecord, SessionStore
from app.auth.tokens import Role, TokenRecord, TokenStore, bootstrap_fingerprint, hash_token
from app.errors import Forbidden, TooManyRequests, Unauthorized, wants_json
from app.events.topics import TopicFilter
from app.services import Services, services
from app.settings import Settings
from app.storage.keyspace import Keys
from app.web.bodies import topic_filter

log = logging.getLogger("livedash.auth")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
BOOTSTRAP = "bootstrap"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="livedash"'}
# The InfluxDB-compatible endpoints also take HTTP Basic with the token as the password (what InfluxDB 1.x
# clients and Telegraf's outputs.influxdb send with username/password). Nowhere else: a browser may replay
# Basic credentials by itself, and these answer no challenge that would make it ask for them.
BASIC_AUTH_ENDPOINTS = frozenset({"write.write", "write.write_v2", "write.query"})
# Where ?ticket= (a single-use stream ticket, app/auth/tickets.py) is a credential: EventSource sends no header.
TICKET_ENDPOINTS = frozenset({"stream.stream"})


def basic_password(token: str) -> str:
    """The password of ``Authorization: Basic <base64(user:password)>`` ("" when malformed)."""
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


class Guard:
    """This process's view of credentials: tokens, sessions, rate limit, audit."""

    def __init__(self, settings: Settings, redis: Redis, keys: Keys) -> None:
        self.settings = settings
        # A session opened with LIVEDASH_ADMIN_TOKEN records this fingerprint, so it ends when the token changes.
        self.bootstrap_hash = (
            bootstrap_fingerprint(settings.admin_token, settings.secret_key or "") if settings.admin_token else None
        )
        self.tokens = TokenStore(redis, keys, bootstrap=self.bootstrap_hash)
        # Without a secret key (auth off) there are no sessions to sign.
        self.sessions = SessionStore(redis, keys, settings.secret_key or "", settings.session_ttl)
        self.rate = WriteRateLimit(redis, keys, settings.write_rate_limit, settings.write_rate_window)
        self.audit = AuditLog(
            redis, keys, settings.audit_maxlen, settings.audit_refusals_maxlen, settings.auth_failure_window
        )
        self._bootstrap = hash_token(settings.admin_token) if settings.admin_token else None
        # JWTs from an external issuer (LIVEDASH_JWT_SECRET / LIVEDASH_JWT_JWKS_URL); None: opaque tokens only.
        self.jwt = JwtVerifier(settings) if JwtVerifier.configured(settings) else None
        self._scraper = hash_token(settings.metrics_token) if settings.metrics_token else None

    def is_bootstrap(self, token: str) -> bool:
        # Compare digests: constant time, and the length of the secret does not show.
        return self._bootstrap is not None and hmac.compare_digest(hash_token(token), self._bootstrap)

    def scraper_identity(self, token: str) -> Identity | None:
        """``LIVEDASH_METRICS_TOKEN``: the role ``metrics`` (``/metrics`` only), no Redis asked; else None."""
        if self._scraper is None or not hmac.compare_digest(hash_token(token), self._scraper):
            return None
        return Identity(
            role=Role.METRICS, token_id="metrics", name="LIVEDASH_METRICS_TOKEN", token_hash="", kind="metrics"
        )

    def is_bootstrap_hash(self, token_hash: str) -> bool:
        """Whether a session's recorded hash is this process's LIVEDASH_ADMIN_TOKEN (not a rotated one)."""
        return self.bootstrap_hash is not None and hmac.compare_digest(
            token_hash.encode(), self.bootstrap_hash.encode()
        )

    def bootstrap_identity(self, session: SessionRecord | None = None) -> Identity:
        assert self.bootstrap_hash is not None, "only with LIVEDASH_ADMIN_TOKEN set"
        return Identity(
            role=Role.ADMIN,
            token_id=BOOTSTRAP,
            name="LIVEDASH_ADMIN_TOKEN",
            kind="bootstrap",
            token_hash=self.bootstrap_hash,
            expires_at=session.expires_at if session else None,
            session_id=session.id if session else None,
            csrf=session.csrf if session else None,
        )

    @staticmethod
    def identity_of(record: TokenRecord, token_hash: str, session: SessionRecord | None = None) -> Identity:
        expires = [t for t in (record.expires_at, session.expires_at if session else None) if t is not None]
        return Identity(
            role=record.role,
            token_id=record.id,
            name=record.name,
            token_hash=token_hash,
            scope=TopicFilter(record.scope) if record.scope else None,
            devices=frozenset(record.devices) if record.devices is not None else None,
            expires_at=min(expires) if expires else None,
            session_id=session.id if session else None,
            csrf=session.csrf if session else None,
        )

    async def from_token(self, token: str) -> Identity | None:
        """The identity of a Bearer token: None when unknown; ``JwtRefused`` for a JWT that is not accepted."""
        if self.is_bootstrap(token):
            return self.bootstrap_identity()
        if self.jwt is not None and looks_like_jwt(token):
            return await self.jwt.identify(token)
        digest = hash_token(token)
        record = await self.tokens.by_hash(digest)
        return None if record is None else self.identity_of(record, digest)

    async def writer_from_token(self, token: str) -> tuple[Identity | None, Counted]:
        """``from_token`` and one write counted against the token's rate, in one round trip."""
        if self.is_bootstrap(token):
            identity = self.bootstrap_identity()
            return identity, await self.rate.count(identity.token_hash)
        if self.jwt is not None and looks_like_jwt(token):
            try:
                identity = await self.jwt.identify(token)
            except JwtRefused:
                return None, (0, 0)  # not settled here: check_request answers with the reason
            return identity, await self.rate.count(identity.token_hash)
        digest = hash_token(token)
        raw, counted = await self.rate.lookup_and_count(self.tokens.keys.token(digest), digest)
        record = self.tokens.record_from(raw)
        return (None if record is None else self.identity_of(record, digest)), counted

    async def from_session(self, session: SessionRecord) -> Identity | None:
        if self.is_bootstrap_hash(session.token_hash):
            return self.bootstrap_identity(session)
        if session.identity is not None:
            # Opened with a JWT: the identity it stood for, until the JWT's exp (its expires_at: what ends its
            # streams with bye "expired"); the session's own end (renewable up to exp) is checked as any session's.
            found = identity_from_session(session.identity)
            if found is None or self.jwt is None:  # past exp, or JWTs are no longer accepted here
                return None
            return replace(found, session_id=session.id, csrf=session.csrf)
        # Any other hash must name a stored token. A rotated admin token's fingerprint (or a session
        # recorded as "bootstrap" before fingerprints) names none: that session is over.
        record = await self.tokens.by_hash(session.token_hash)
        return None if record is None else self.identity_of(record, session.token_hash, session)

    async def refuse(self, kind: str, who: str, *, source: str | None, failure: bool = False, **details: Any) -> None:
        """Count a refusal against its source (``source``: the client address), sampled into the refusal log.

        A failed credential (``failure``) past ``LIVEDASH_AUTH_FAILURE_LIMIT``
        in the source's window raises 429 instead of letting the caller's 401
        go out: the answer to a flood of guesses is a cheap refusal with
        ``Retry-After``. Counted per address, never per token presented (no key
        per bogus token), and only failures count: a valid credential from the
        same address (a NAT shared with whoever floods) still works.
        """
        counted = await self.audit.refused(source, kind, who, failure=failure, **details)
        limit = self.settings.auth_failure_limit
        if failure and counted is not None and counted.failures > limit:
            retry = max(1, math.ceil(counted.left_ms / 1000))
            raise TooManyRequests(
                f"too many failed credentials from this address (more than {limit} in "
                f"{self.settings.auth_failure_window:g} s); retry in {retry} s",
                code="too_many_failures",
                headers={"Retry-After": str(retry)},
            )

    async def identify(self) -> Identity | None:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "basic" and request.endpoint in BASIC_AUTH_ENDPOINTS:
                scheme, token = "token", basic_password(token)
            # "Token" too: what Telegraf's InfluxDB output sends to /api/write.
            if scheme.lower() not in ("bearer", "token") or not token.strip():
                raise Unauthorized("use 'Authorization: Bearer <token>'", code="bad_credentials", headers=CHALLENGE)
            try:
                identity = self.scraper_identity(token.strip()) or await self.from_token(token.strip())
            except JwtRefused as exc:
                raise Unauthorized(
                    f"JWT refused ({exc.reason}): {exc.detail}",
                    code="bad_credentials",
                    headers={
                        "WWW-Authenticate": f'Bearer realm="livedash", error="invalid_token", '
                        f'error_description="{exc.reason}"'
                    },
                    body={"reason": exc.reason},
                ) from None
            if identity is None:
                raise Unauthorized("unknown, revoked or expired token", code="bad_credentials", headers=CHALLENGE)
            return identity
        ticket = request.args.get("ticket") if request.endpoint in TICKET_ENDPOINTS else None
        if ticket is not None:
            return await tickets.redeem(self, ticket)
        return await self.from_cookie(request.cookies.get(COOKIE_NAME))

    async def from_cookie(self, cookie: str | None) -> Identity | None:
        """The identity of a session cookie we signed, while its session lives; None otherwise."""
        if cookie and self.settings.secret_key:
            session_id = self.sessions.session_id(cookie)
            session = await self.sessions.get(session_id) if session_id else None
            if session is not None:
                return await self.from_session(session)
        return None


def guard() -> Guard:
    return services().guard


def current_identity() -> Identity:
    """Who is calling (an anonymous admin when auth is off)."""
    identity = g.get("identity")
    return identity if isinstance(identity, Identity) else ANONYMOUS


def _is_page() -> bool:
    return request.method == "GET" and not request.path.startswith(("/api/", "/fragments/")) and not wants_json()


def see_other(location: str) -> Response:
    """A 303 redirect (quart's ``redirect`` is typed as Werkzeug's response)."""
    return Response("", status=303, headers={"Location": location})


def safe_next(path: str) -> str:
    """Only a local path: never an open redirect to another site."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/"


async def check_request() -> Response | None:
    settings = services().settings
    if not settings.auth_on:
        g.identity = ANONYMOUS
        return None
    if request.routing_exception is not None:
        return None  # 404 / 405: the error handler answers, and serves nothing
    roles = allowed_roles(request.endpoint)
    grd = guard()
    source = request.remote_addr
    try:
        identity = await grd.identify()
    except Unauthorized:
        # Past the source's failure limit this raises 429 instead.
        await grd.refuse(
            "bad-token", "(bad token)", source=source, failure=True, method=request.method, path=request.path
        )
        raise
    if roles is None:
        g.identity = identity
        return None
    if identity is None:
        if _is_page():
            return see_other("/login?next=" + quote(safe_next(request.full_path.rstrip("?")), safe="/"))
        await grd.refuse("anonymous", "(anonymous)", source=source, method=request.method, path=request.path)
        raise Unauthorized("authentication required: send 'Authorization: Bearer <token>'", headers=CHALLENGE)
    if identity.role not in roles:
        await grd.refuse("wrong-role", identity.who, source=source, method=request.method, path=request.path)
        needed = " or ".join(sorted(roles))
        raise Forbidden(f"this needs the role {needed}; this credential is {identity.role}", code="wrong_role")
    if request.method not in SAFE_METHODS:
        if identity.via_cookie and not csrf_exempt(request.endpoint):
            sent = request.headers.get(CSRF_HEADER, "")
            if not (identity.csrf and sent and hmac.compare_digest(sent.encode(), identity.csrf.encode())):
                await grd.refuse("csrf", identity.who, source=source, method=request.method, path=request.path)
                raise Forbidden(f"missing or wrong {CSRF_HEADER} header", code="csrf")
        if not rate_exempt(request.endpoint):
            try:
                await grd.rate.hit(identity.token_hash)
            except TooManyRequests:
                await grd.refuse("rate-limited", identity.who, source=source, method=request.method, path=request.path)
                raise
    g.identity = identity
    return None


# Writes not audited one by one: logging in (audited as such), presence
# heartbeats, and readings. Sensors post thousands of readings a second; an
# entry each would push every token change out of the bounded audit log
# within seconds. Readings are counted instead
# (``livedash_readings_accepted_total``); a refused one is still audited.
NOT_AUDITED = frozenset(
    {
        "auth.login",
        "presence.heartbeat",
        "presence.leave",
        "metrics.ingest",
        "write.write",
        "write.write_v2",
        "write.query",
    }
)


async def audit_write(response: Response) -> Response:
    """Every accepted write to documents, rules and tokens: who and what (never its body: it may be large)."""
    identity = g.get("identity")
    if (
        request.method not in SAFE_METHODS
        and isinstance(identity, Identity)
        and identity is not ANONYMOUS
        and response.status_code < 400
        and request.endpoint not in NOT_AUDITED
    ):
        await guard().audit.record(
            "write", identity.who, method=request.method, path=request.path, status=response.status_code
        )
    return response


# --- what routes ask ---------------------------------------------------------
def visible_topics(raw: str | None, *, stream: bool = False) -> TopicFilter:
    """The requested topic filter narrowed to the caller's scope (``scoped_topics`` for the caller)."""
    return scoped_topics(services(), current_identity(), raw, stream=stream)


def scoped_topics(svc: Services, identity: Identity, raw: str | None, *, stream: bool = False) -> TopicFilter:
    """The requested topic filter narrowed to ``identity``'s scope.

    For a stream it also enforces the per-token stream limit (this process):
    the open streams are the hub's subscriptions that carry the same token,
    and the opens allowed but not subscribed yet (each claims its slot here).
    """
    requested = topic_filter(raw)
    if identity is ANONYMOUS:
        return requested
    topics = ScopedTopics(requested, identity, stream=stream)
    if stream:
        limit = svc.settings.streams_per_token
        open_ = svc.hub.streams_of(identity.token_id)
        if open_ >= limit:
            raise TooManyRequests(
                f"this token already has {open_} open streams (the limit is {limit}); close one or poll /api/events",
                code="too_many_streams",
                headers={"Retry-After": "5"},
            )
        topics.claim = svc.hub.claim(identity.token_id)
    return topics


def require_room(room: str) -> None:
    if not current_identity().sees_room(room):
        raise Forbidden(f"this credential may not see room {room!r}", code="out_of_scope")


def require_devices(devices: Iterable[str], identity: Identity | None = None) -> None:
    """A device token writes only for its own devices (``identity``: the caller, if not the request's)."""
    identity = identity or current_identity()
    denied = sorted({d for d in devices if not identity.may_write_device(d)})
    if denied:
        raise Forbidden(f"this token may not write for device(s) {denied[:10]}", code="out_of_scope")


def require_device_visible(device: str) -> None:
    if not current_identity().sees_device(device):
        raise Forbidden(f"this credential may not see device {device!r}", code="out_of_scope")


# What a page offers each role (the routes' access rules refuse the rest anyway).
OFFERS = {"annotate": ANNOTATE, "rules": ADMIN}


def may(action: str) -> bool:
    """For templates: does the caller's role allow ``action`` ("annotate", "rules")? Controls it may not use are
    not offered."""
    return current_identity().role in OFFERS[action]


def csrf_token() -> str:
    """For templates: the session's CSRF token ("" for Bearer callers and with auth off)."""
    return current_identity().csrf or ""


def init_app(app: Quart, settings: Settings) -> None:
    if settings.auth_on and not settings.secret_key:
        # Production (hypercorn via the Procfile) must be configured; `livedash run` sets one itself.
        raise RuntimeError(
            "SECRET_KEY is not set. It signs session cookies and is required while authentication is on: "
            "set SECRET_KEY (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
            "or LIVEDASH_AUTH=off to run without authentication."
        )
    if not settings.auth_on:
        banner = "!" * 78
        log.warning(
            "\n%s\n!! LIVEDASH_AUTH=off: AUTHENTICATION IS DISABLED. Anyone who can reach this port can read\n"
            "!! every stream and change every annotation, alert rule and reading.\n"
            "!! POST /api/tokens is refused meanwhile (a token made now would stay valid once auth is on);\n"
            "!! `livedash token create` on the server still makes them.\n%s",
            banner,
            banner,
        )
    app.before_request(check_request)
    app.after_request(audit_write)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["current_identity"] = current_identity
    app.jinja_env.globals["may"] = may

"""The way in and out for browsers: token link, login form, logout, renewal.

``GET /login?token=…`` (the link ``livedash run`` and ``livedash token
create`` print) and ``POST /login`` (the form) exchange a token for a session
cookie: signed, HttpOnly, SameSite=Lax, Secure over https. The answer is a
303 redirect, so the token never stays in the address bar or the history.
``POST /login`` refuses a form posted from another site (login CSRF, see
``cross_site_reason``). ``POST /api/session/renew`` extends a session (the
page does it on a ``reauth`` event); ``GET /api/session`` says who the
caller is.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import orjson
from quart import Blueprint, Response, g, render_template, request

from app.auth.access import ANY, PUBLIC, Identity
from app.auth.guard import CSRF_HEADER, current_identity, guard, safe_next, see_other
from app.auth.issuer import JwtRefused, identity_from_session, looks_like_jwt, session_identity
from app.auth.sessions import COOKIE_NAME, SessionRecord
from app.auth.tokens import looks_like_token
from app.errors import BadRequest, Forbidden, TooManyRequests, Unauthorized
from app.services import services
from app.settings import Settings
from app.web.htmx import is_htmx
from app.web.responses import json_response
from app.web.routing import Param, route

bp = Blueprint("auth", __name__)

# same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on our own form's POST,
# which a browser without Sec-Fetch-Site could then not tell from another site's (cross_site_reason).
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
SIGNED_IN = {
    "description": "signed in: a session cookie, and on to `next`",
    "headers": {"Location": {"schema": {"type": "string"}}, "Set-Cookie": {"schema": {"type": "string"}}},
}


def _settings() -> Settings:
    return services().settings


def _is_https() -> bool:
    return request.scheme == "https" or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _set_cookie(response: Response, session: SessionRecord) -> None:
    response.set_cookie(
        COOKIE_NAME,
        guard().sessions.cookie_value(session.id),
        max_age=int(_settings().session_ttl),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=_is_https(),
    )


async def _login_form(error: str | None, next_path: str, status: int) -> Response:
    html = await render_template("login.html", error=error, next=next_path)
    return Response(html, status=status, content_type="text/html; charset=utf-8", headers=NO_STORE)


async def _exchange(token: str, next_path: str) -> Response:
    grd = guard()
    refused = "That token is unknown, revoked or expired."
    try:
        identity = await grd.from_token(token) if looks_like_token(token) or looks_like_jwt(token) else None
    except JwtRefused as exc:  # a JWT from the configured issuer, not accepted: say why
        identity, refused = None, f"That JWT was refused ({exc.reason}): {exc.detail}."
    if identity is None:
        try:
            await grd.refuse("login-failed", "(unknown token)", source=request.remote_addr, failure=True)
        except TooManyRequests as exc:
            retry = exc.headers.get("Retry-After", "60")
            message = f"Too many failed logins from your address; try again in {retry} s."
            response = await _login_form(message, next_path, 429)
            response.headers.update(exc.headers)
            return response
        return await _login_form(refused, next_path, 401)
    # A JWT has no record in Redis: its session keeps the identity it stood for, and ends at its exp.
    stored = session_identity(identity) if identity.kind == "jwt" else None
    session = await grd.sessions.open(identity.token_hash, identity.expires_at, stored)
    await grd.audit.record("login", identity.who, session=session.id[:8], remote=request.remote_addr)
    response = see_other(safe_next(next_path))
    response.headers.update(NO_STORE)
    _set_cookie(response, session)
    return response


# The way in is public (and needs no CSRF token: it is how a browser gets one); in and out do not count
# against the write rate.
@route(
    bp,
    "GET",
    "/login",
    access=PUBLIC,
    summary="Login form, or exchange ?token= for a session cookie",
    tag="auth",
    description="The form (200); with a good `token` a session cookie and a 303 to `next` (with auth off, straight "
    "there); a bad one is the form again with 401.",
    ok_type="text/html",
    params=(Param("token", description="a token (from a login link)"), Param("next", description="where to go")),
    errors=(401, 429),
    answers={303: SIGNED_IN},
)
async def login_page() -> Response:
    next_path = safe_next(request.args.get("next", "/"))
    if not _settings().auth_on:
        return see_other(next_path)
    token = request.args.get("token")
    if token:
        return await _exchange(token.strip(), next_path)
    return await _login_form(None, next_path, 200)


@route(
    bp,
    "POST",
    "/login",
    access=PUBLIC,
    summary="Exchange a token (form field token) for a session cookie",
    tag="auth",
    description="A form from another site is refused (403 cross_site_login); a bad token is the form again with 401.",
    body="Login",
    form_only=True,
    ok=303,
    ok_type="",
    answers={303: SIGNED_IN},
    errors=(401, 403, 429),
    csrf_exempt=True,
    rate_exempt=True,
)
async def login() -> Response:
    if _settings().auth_on:
        await _refuse_cross_site()
    form = await request.form
    next_path = safe_next(form.get("next", "/"))
    if not _settings().auth_on:
        return see_other(next_path)
    return await _exchange((form.get("token") or "").strip(), next_path)


def _host_port(url: str, scheme: str | None = None) -> tuple[str, str, str] | None:
    """(scheme, host, port) of ``scheme://host[:port]`` (or ``//host[:port]`` with ``scheme`` given).

    The scheme's own port when none is written; None when malformed (a bad
    IPv6 literal, a port out of range or not a number).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = scheme or parts.scheme
    if not parts.hostname:
        return None
    return scheme, parts.hostname, str(port) if port else {"http": "80", "https": "443"}.get(scheme, "")


def _same_host(origin: str) -> bool:
    """Does ``Origin`` name this server, as the browser reached it (``Host``, or a proxy's ``X-Forwarded-Host``)?

    Compared by host and port only: behind a proxy that ends TLS the app sees
    http while the page was https. The forwarded header can be trusted here
    because the threat is a page on another site, and a page cannot set it.
    """
    sent = _host_port(origin)
    if sent is None:
        return False
    for host in (request.headers.get("Host", ""), request.headers.get("X-Forwarded-Host", "")):
        host = host.split(",")[0].strip().lower()
        if host and _host_port(f"//{host}", sent[0]) == sent:
            return True
    return False


def cross_site_reason() -> str | None:
    """Why this ``POST /login`` came from another site's page; None when it is ours, or not from a browser.

    Login CSRF: a page elsewhere posts its own token to our form, and the
    victim's browser is then signed in as the attacker (whose dashboards,
    notes and rules the victim fills in). Browsers say where a request comes
    from: ``Sec-Fetch-Site`` (every current browser; a page cannot set or
    alter it) first, else ``Origin``. ``Origin: null`` is refused when
    ``Sec-Fetch-Site`` does not vouch for it: any page can make its requests
    send it. A request with neither header is not a browser's cross-site form
    (curl, scripts) and is allowed.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if fetch_site:
        return None if fetch_site in ("same-origin", "none") else f"Sec-Fetch-Site: {fetch_site[:40]}"
    origin = request.headers.get("Origin")
    if origin is None or _same_host(origin.strip().lower()):
        return None
    return f"Origin: {origin[:200]}"


async def _refuse_cross_site() -> None:
    reason = cross_site_reason()
    if reason is None:
        return
    await guard().refuse("cross-site-login", "(login form)", source=request.remote_addr, sent=reason)
    raise Forbidden(
        f"a login posted from another site ({reason}) is refused: it would sign this browser in as someone "
        "else (login CSRF). Log in from this server's own /login page.",
        code="cross_site_login",
    )


@route(
    bp,
    "POST",
    "/logout",
    access=ANY,
    summary="End the browser session",
    tag="auth",
    description="A 303 to the login form; htmx and clients asking for JSON get `{signed_out: true}` (and HX-Redirect).",
    ok=303,
    ok_type="",
    answers={
        303: {"description": "to the login form", "headers": {"Location": {"schema": {"type": "string"}}}},
        200: {
            "description": "for htmx (HX-Request) and JSON clients",
            "content": {
                "application/json": {"schema": {"type": "object", "properties": {"signed_out": {"const": True}}}}
            },
        },
    },
    rate_exempt=True,
)
async def logout() -> Response:
    identity = current_identity()
    if identity.session_id is not None:
        await guard().sessions.close(identity.session_id)
        await guard().audit.record("logout", identity.who)
    if is_htmx() or request.accept_mimetypes.best == "application/json":
        response = Response(b'{"signed_out":true}', content_type="application/json")
        response.headers["HX-Redirect"] = "/login"
    else:
        response = see_other("/login")
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


def _describe(identity: Identity) -> dict[str, object]:
    return {
        "role": identity.role,
        "name": identity.name,
        "subject": identity.subject,
        "token_id": identity.token_id,
        "scope": list(identity.scope.patterns) if identity.scope else None,
        "devices": sorted(identity.devices) if identity.devices is not None else None,
        "expires_at": identity.expires_at,
        "via": "cookie" if identity.via_cookie else "bearer",
    }


@route(
    bp, "GET", "/api/session", access=ANY, summary="Who the caller is (role, scope, expiry)", tag="auth", errors=(401,)
)
async def whoami() -> Response:
    body = _describe(current_identity())
    if current_identity().via_cookie:
        body["csrf_header"] = CSRF_HEADER
    return json_response(body, headers=NO_STORE)


@route(
    bp,
    "POST",
    "/api/session/renew",
    access=ANY,
    summary="Renew the browser session",
    tag="auth",
    description="Only a browser session renews: with a Bearer token (which needs none) the answer is 400 no_session.",
    errors=(400, 401),
    rate_exempt=True,
)
async def renew() -> Response:
    identity = current_identity()
    if identity.session_id is None:
        raise BadRequest("no browser session to renew: Bearer tokens need no renewal", code="no_session")
    grd = guard()
    session = await grd.sessions.get(identity.session_id)
    if session is None:  # ended between the check and now
        raise BadRequest("the session has ended; log in again", code="no_session")
    token_end = None
    if session.identity is not None:  # opened with a JWT: never renewed past its exp
        jwt_identity = identity_from_session(session.identity)
        if jwt_identity is None:
            raise Unauthorized("the JWT this session was opened with has expired; log in again", code="bad_credentials")
        token_end = jwt_identity.expires_at
    elif not grd.is_bootstrap_hash(session.token_hash):
        record = await grd.tokens.by_hash(session.token_hash)
        if record is None:  # revoked or expired between the check and now: never renew past the token
            raise Unauthorized("the token this session was opened with is gone; log in again", code="bad_credentials")
        token_end = record.expires_at
    renewed = await grd.sessions.renew(session, token_end)
    g.identity = identity
    response = Response(
        orjson.dumps({"expires_at": renewed.expires_at}),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
    _set_cookie(response, renewed)
    return response

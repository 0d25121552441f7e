"""Who is calling, for requests answered on raw ASGI paths in front of Quart.

``ingest/fast_path.py`` (JSON ``POST /api/metrics``) and ``web/raw_stream.py``
(``GET /api/stream``) settle their common case without Quart. They ask here,
and get either the caller or ``None``: not settled here, so the request goes
through Quart untouched and ``guard.check_request`` answers it as it answers
every other route (401 or 403, the refusal counted against its source, CSRF).
The decisions themselves (a token's record, a session, a JWT, the role, the
write rate) are the guard's.
"""

from __future__ import annotations

from quart import Quart
from werkzeug.http import parse_cookie

from app.auth.access import ANONYMOUS, Identity, allowed_roles
from app.auth.issuer import JwtRefused
from app.auth.sessions import COOKIE_NAME
from app.errors import TooManyRequests
from app.services import services_of


async def bearer_writer(app: Quart, authorization: str, endpoint: str, path: str) -> Identity | None:
    """For a write answered outside Quart (``fast_ingest``): the caller, when a Bearer token settles it.

    ``None`` means not settled here: no Bearer header (a cookie, or nobody),
    a bad token or a wrong role. The request then goes through Quart, where
    ``check_request`` answers it (401, 403, CSRF, the audit entry) as for
    every other route. The write is counted against the token's rate limit
    in the same round trip as the token lookup (so only for endpoints that are
    rate-limited), and refused past it, exactly as ``check_request`` would.
    """
    svc = services_of(app)
    if not svc.settings.auth_on:
        return ANONYMOUS
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not token.strip():
        return None
    grd = svc.guard
    identity, counted = await grd.writer_from_token(token.strip())
    roles = allowed_roles(endpoint)
    if identity is None or roles is None or identity.role not in roles:
        return None
    try:
        grd.rate.check(counted)
    except TooManyRequests:
        # No client address on this path: the token is the source (it is what the write rate is kept for).
        await grd.refuse("rate-limited", identity.who, source=f"token:{identity.token_id}", method="POST", path=path)
        raise
    return identity


async def stream_reader(app: Quart, authorization: str, cookie_header: str, endpoint: str) -> Identity | None:
    """For a stream answered outside Quart (``web/raw_stream``): the caller, when a Bearer token or a session
    cookie settles it.

    ``None`` means not settled here: nobody, a bad token or cookie, a refused
    JWT, a wrong role. The request then goes through Quart, where
    ``check_request`` answers it (401 or 403, the refusal counted against its
    source) as for every other route. Nothing here has a side effect.
    """
    svc = services_of(app)
    if not svc.settings.auth_on:
        return ANONYMOUS
    grd = svc.guard
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token") or not token.strip():
            return None
        try:
            identity = grd.scraper_identity(token.strip()) or await grd.from_token(token.strip())
        except JwtRefused:
            return None
    else:
        identity = await grd.from_cookie(parse_cookie(cookie_header).get(COOKIE_NAME) if cookie_header else None)
    roles = allowed_roles(endpoint)
    if identity is None or roles is None or identity.role not in roles:
        return None
    return identity

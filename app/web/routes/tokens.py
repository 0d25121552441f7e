"""Token management and the audit log, for admins.

``POST /api/tokens`` creates a token and answers its plaintext once (only
its hash is kept), with a ready login link for browsers. The caller makes
tokens only within its own role, scope and devices (``access.mint_refusal``,
403 naming why), and none at all while ``LIVEDASH_AUTH=off``, when anyone
could mint an admin token that outlives the switch. ``GET /api/tokens``
lists them (never a plaintext); ``POST /api/tokens/<id>/revoke`` (or
``DELETE /api/tokens/<id>``) revokes one: its open streams end within
``LIVEDASH_AUTH_RECHECK_INTERVAL`` seconds. ``POST /api/tokens/<id>`` with
``{"name"}`` renames one: its display name is who its writes and presence
show (its id, the stable subject, stays). ``GET /api/audit`` reads the
security audit log, newest first; ``GET /api/audit?kind=refusals`` the
refusal log (sampled per client address, each entry with its count; see
``app/auth/audit.py``).
"""

from __future__ import annotations

from urllib.parse import quote

from quart import Blueprint, Response, request

from app.auth.access import ADMIN, mint_refusal
from app.auth.audit import KINDS
from app.auth.guard import current_identity, guard
from app.auth.tokens import TokenCreate, TokenUpdate, parse_create
from app.errors import BadRequest, Forbidden, NotFound
from app.services import services
from app.validation import parse_model
from app.web.bodies import int_arg, json_or_form
from app.web.responses import NO_STORE, json_response
from app.web.routing import Param, also, route

bp = Blueprint("tokens", __name__)

MAX_AUDIT = 1000
TOKEN_ID = Param("token_id", "path", required=True)


@route(
    bp,
    "GET",
    "/api/tokens",
    access=ADMIN,
    summary="List tokens (admin; never a plaintext)",
    tag="auth",
    errors=(401, 403),
)
async def list_tokens() -> Response:
    return json_response({"tokens": [r.public() for r in await guard().tokens.list()]}, headers=NO_STORE)


@route(
    bp,
    "POST",
    "/api/tokens",
    access=ADMIN,
    summary="Create a token (admin); its plaintext is answered once",
    tag="auth",
    description="Within the caller's own bounds (role, scope, devices), else 403; refused while LIVEDASH_AUTH=off.",
    body="TokenCreate",
    ok=201,
    errors=(400, 401, 403, 415, 422),
)
async def create() -> Response:
    if not services().settings.auth_on:
        # Anyone can call this while auth is off, and the token would stay valid once auth is on:
        # an admin token for whoever asked first. The console (`livedash token create`) stays the way.
        raise Forbidden(
            "tokens cannot be created over HTTP while LIVEDASH_AUTH=off (anyone can call this, and the token "
            "would stay valid once auth is turned on); use `livedash token create` on the server",
            code="auth_off",
        )
    body, is_form = await json_or_form()
    if is_form and isinstance(body, dict):
        # A form sends comma lists and empty fields; JSON sends lists and nulls.
        body = {k: v for k, v in body.items() if v not in (None, "")}
        for key in ("scope", "devices"):
            if isinstance(body.get(key), str):
                body[key] = [p.strip() for p in body[key].split(",") if p.strip()]
    spec = parse_create(body)
    refusal = mint_refusal(current_identity(), spec)
    if refusal is not None:
        code, detail = refusal
        raise Forbidden(detail, code=code)
    grd = guard()
    plaintext, record = await grd.tokens.create(spec)
    await grd.audit.record("token-created", current_identity().who, token=record.id, role=record.role, name=record.name)
    login_url = f"{request.host_url.rstrip('/')}/login?token={quote(plaintext)}"
    return json_response({**record.public(), "token": plaintext, "login_url": login_url}, status=201, headers=NO_STORE)


@route(
    bp,
    "POST",
    "/api/tokens/<token_id>/revoke",
    access=ADMIN,
    summary="Revoke a token (admin); its streams end",
    tag="auth",
    params=(TOKEN_ID,),
    errors=(401, 403, 404),
)
@also(
    bp,
    "DELETE",
    "/api/tokens/<token_id>",
    summary="Revoke a token (admin)",
    tag="auth",
    params=(TOKEN_ID,),
    errors=(401, 403, 404),
)
async def revoke(token_id: str) -> Response:
    grd = guard()
    record = await grd.tokens.revoke(token_id)
    if record is None:
        raise NotFound(f"no token {token_id[:20]!r}")
    await grd.audit.record("token-revoked", current_identity().who, token=record.id, name=record.name)
    return json_response({"revoked": record.id}, headers=NO_STORE)


@route(
    bp,
    "POST",
    "/api/tokens/<token_id>",
    access=ADMIN,
    summary="Rename a token (admin): its display name on writes and presence",
    tag="auth",
    description='Body `{"name": "Ana Lima"}` (JSON or form). The id, the stable subject, stays.',
    params=(TOKEN_ID,),
    body="TokenUpdate",
    errors=(400, 401, 403, 404, 415, 422),
)
async def rename(token_id: str) -> Response:
    if not services().settings.auth_on:
        # As with create: a name given now would stand for whoever uses the token once auth is on.
        raise Forbidden("tokens cannot be renamed over HTTP while LIVEDASH_AUTH=off", code="auth_off")
    body, _ = await json_or_form()
    name = parse_model(TokenUpdate, body).name
    grd = guard()
    record = await grd.tokens.get(token_id)
    if record is None:
        raise NotFound(f"no token {token_id[:20]!r}")
    # Only a token this caller could have made: a scoped admin renames nobody outside its bounds.
    refusal = mint_refusal(
        current_identity(), TokenCreate(role=record.role, scope=record.scope, devices=record.devices)
    )
    if refusal is not None:
        raise Forbidden(refusal[1], code=refusal[0])
    renamed = await grd.tokens.rename(token_id, name)
    if renamed is None:
        raise NotFound(f"no token {token_id[:20]!r}")
    await grd.audit.record("token-renamed", current_identity().who, token=record.id, name=name, was=record.name)
    return json_response(renamed.public(), headers=NO_STORE)


@route(
    bp,
    "GET",
    "/api/audit",
    access=ADMIN,
    summary="The audit log, newest first (admin): token changes, logins, writes to annotations and rules",
    tag="auth",
    description="`kind=refusals` reads the refusal log instead (401, 403, 429, failed logins): counted per client "
    "address in a window and sampled (the 1st, 2nd, 4th, 8th, ... of each kind from an address), each entry with "
    "`source` and `count`.",
    params=(
        Param(
            "limit",
            type="integer",
            description="most entries (default 100)",
            schema={"minimum": 1, "maximum": MAX_AUDIT},
        ),
        Param("kind", description="security (default) or refusals", schema={"enum": list(KINDS)}),
    ),
    errors=(400, 401, 403),
)
async def audit() -> Response:
    limit = int_arg("limit", 100, 1, MAX_AUDIT)
    kind = request.args.get("kind", "security")
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}", code="bad_kind")
    entries = await guard().audit.recent(limit, "refusals" if kind == "refusals" else "security")
    return json_response({"kind": kind, "entries": entries}, headers=NO_STORE)

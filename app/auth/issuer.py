"""JWTs from an external issuer: an OIDC provider (Keycloak, Auth0, Azure AD) or Directus.

Accepted wherever livedash's own opaque tokens are (``Authorization: Bearer``,
and exchanged for a browser session at ``/login``), once
``LIVEDASH_JWT_SECRET`` (HS256) or ``LIVEDASH_JWT_JWKS_URL`` (RS256/ES256) is
set. A token that looks like a JWT (three base64url parts, a JSON header) is
checked here; anything else is an opaque token, looked up as before.

The check, in order, each failure a ``JwtRefused`` with a short reason the
401 carries:

- ``malformed``: not a JWT at all (bad base64 or JSON);
- ``alg_not_allowed``: the header's ``alg`` is not in the accepted list
  (``none`` never is, nor HS256 without a secret: no key confusion);
- ``unknown_kid``: no key in the JWKS for the header's ``kid``, even after a
  re-read (at most one per ``LIVEDASH_JWKS_REFRESH_INTERVAL`` per process);
- ``bad_signature``, ``expired``, ``not_yet_valid``, ``wrong_issuer``,
  ``wrong_audience``, ``missing_claim``: PyJWT's checks, with
  ``LIVEDASH_JWT_LEEWAY`` of clock skew; ``exp`` is required;
- ``no_subject``, ``no_role``: the claims do not say who, or as what.

Claims become an ``Identity`` by settings (claim names, a role map) over a
preset (``generic``, ``oidc``, ``directus``). The identity's subject is
``jwt:<sub>``; its end is ``exp``, when its open streams get
``bye {"reason": "expired"}`` (``app/auth/revocation.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import orjson
from jwt import PyJWKSet
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWKSetError,
    PyJWTError,
)
from jwt.types import Options

from app.auth.access import RANKED, Identity
from app.auth.tokens import SCOPE_PATTERN, Role
from app.events.topics import TopicFilter
from app.settings import Settings

log = logging.getLogger(__name__)

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
KEY_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"})
MAX_JWT = 8192
JWKS_TIMEOUT = 5.0
MAX_JWKS_BYTES = 256 * 1024


class JwtRefused(Exception):
    """A JWT that is not accepted, and why (one word for the 401's ``reason``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Claims:
    """Which claims say who and as what."""

    subject: str
    names: tuple[str, ...]
    role: str
    scope: str
    admin: str | None


PRESETS: dict[str, tuple[Claims, str | None]] = {
    # (claims, issuer)
    "generic": (Claims("sub", ("name",), "role", "scope", None), None),
    "oidc": (Claims("sub", ("name", "preferred_username", "email"), "roles", "livedash_scope", None), None),
    # Directus access tokens: {id, role, app_access, admin_access, iss: "directus"}; HS256 with its SECRET.
    "directus": (Claims("id", ("name", "email"), "role", "livedash_scope", "admin_access"), "directus"),
}


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts whose header starts like JSON (``eyJ`` is ``{"``): never an opaque ``ldt_`` token."""
    return token.startswith("eyJ") and token.count(".") == 2 and len(token) <= MAX_JWT


def parse_role_map(raw: str) -> dict[str, Role]:
    out: dict[str, Role] = {}
    for pair in (p.strip() for p in raw.split(",") if p.strip()):
        value, sep, role = pair.rpartition("=")
        if not sep or not value.strip():
            raise ValueError(f"LIVEDASH_JWT_ROLE_MAP: {pair!r} is not 'claim value=role'")
        try:
            out[value.strip()] = Role(role.strip())
        except ValueError:
            raise ValueError(f"LIVEDASH_JWT_ROLE_MAP: {role.strip()!r} is not a role") from None
    return out


def claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


class JwksCache:
    """The issuer's signing keys by ``kid``: read once, kept ``ttl``, re-read on an unknown kid (rate-bounded)."""

    def __init__(self, url: str, ttl: float, refresh_interval: float) -> None:
        self.url = url
        self.ttl = ttl
        self.refresh_interval = refresh_interval
        self.keys: dict[str, Any] = {}
        self.fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        self.fetched_at = time.monotonic()  # also on failure: a broken endpoint is not hammered
        try:
            async with httpx.AsyncClient(timeout=JWKS_TIMEOUT, follow_redirects=False) as client:
                response = await client.get(self.url, headers={"Accept": "application/json"})
            if response.status_code != 200 or len(response.content) > MAX_JWKS_BYTES:
                raise ValueError(f"HTTP {response.status_code}, {len(response.content)} bytes")
            jwks = PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, PyJWKSetError, PyJWTError) as exc:
            log.warning("JWKS %s could not be read (%s); keeping %d known key(s)", self.url, exc, len(self.keys))
            return
        self.keys = {k.key_id or "": k for k in jwks.keys}
        log.info("JWKS %s: %d key(s) %s", self.url, len(self.keys), sorted(self.keys))

    async def key(self, kid: str | None) -> Any:
        """The key for ``kid`` (any single key when the JWT names none); None when there is none."""
        async with self._lock:
            now = time.monotonic()
            if now - self.fetched_at >= self.ttl:
                await self._fetch()
            found = self._pick(kid)
            if found is None and time.monotonic() - self.fetched_at >= self.refresh_interval:
                await self._fetch()  # a rotation: the issuer signs with a key we have not seen yet
                found = self._pick(kid)
            return found

    def _pick(self, kid: str | None) -> Any:
        if kid is None:
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)


class JwtVerifier:
    """Checks a JWT and maps its claims to an ``Identity``."""

    def __init__(self, settings: Settings) -> None:
        preset, preset_issuer = PRESETS[settings.jwt_preset]
        self.claims = Claims(
            subject=settings.jwt_claim_subject or preset.subject,
            names=tuple(n.strip() for n in settings.jwt_claim_name.split(",") if n.strip())
            if settings.jwt_claim_name
            else preset.names,
            role=settings.jwt_claim_role or preset.role,
            scope=settings.jwt_claim_scope or preset.scope,
            admin=settings.jwt_claim_admin or preset.admin,
        )
        self.issuer = settings.jwt_issuer or preset_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway
        self.secret = settings.jwt_secret
        self.role_map = parse_role_map(settings.jwt_role_map)
        self.default_role = Role(settings.jwt_default_role) if settings.jwt_default_role else None
        self.jwks = (
            JwksCache(settings.jwt_jwks_url, settings.jwks_cache_ttl, settings.jwks_refresh_interval)
            if settings.jwt_jwks_url
            else None
        )
        if settings.jwt_algorithms:
            algorithms = {a.strip() for a in settings.jwt_algorithms.split(",") if a.strip()}
        else:
            algorithms = (set() if self.secret is None else {"HS256"}) | (
                set() if self.jwks is None else {"RS256", "ES256"}
            )
        # Never `none`; HMAC only with a secret, public-key algorithms only with a JWKS (no key confusion).
        allowed = (HMAC_ALGORITHMS if self.secret else frozenset()) | (KEY_ALGORITHMS if self.jwks else frozenset())
        unknown = algorithms - allowed
        if unknown:
            raise ValueError(
                f"LIVEDASH_JWT_ALGORITHMS: {sorted(unknown)} cannot be used (HMAC algorithms need "
                "LIVEDASH_JWT_SECRET, RS/ES/PS ones LIVEDASH_JWT_JWKS_URL; none is never accepted)"
            )
        self.algorithms = frozenset(algorithms)

    @staticmethod
    def configured(settings: Settings) -> bool:
        return bool(settings.jwt_secret or settings.jwt_jwks_url)

    async def identify(self, token: str) -> Identity:
        """The identity a valid JWT stands for; ``JwtRefused`` with the reason otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError as exc:
            raise JwtRefused("malformed", f"not a JWT: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise JwtRefused("alg_not_allowed", f"alg {str(alg)[:20]!r} is not accepted ({sorted(self.algorithms)})")
        if alg in HMAC_ALGORITHMS:
            key: Any = self.secret
        else:
            assert self.jwks is not None  # the algorithm list allows key algorithms only with a JWKS
            kid = header.get("kid")
            key = await self.jwks.key(kid if isinstance(kid, str) else None)
            if key is None:
                raise JwtRefused("unknown_kid", f"no key {str(kid)[:60]!r} in the issuer's JWKS")
        claims = self._decode(token, key, alg)
        return self.identity(claims)

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        options: Options = {"require": ["exp"], "verify_aud": self.audience is not None}
        try:
            decoded: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=options,
            )
        except ExpiredSignatureError:
            raise JwtRefused("expired", "the JWT has expired (exp)") from None
        except ImmatureSignatureError:
            raise JwtRefused("not_yet_valid", "the JWT is not valid yet (nbf or iat in the future)") from None
        except InvalidIssuerError:
            raise JwtRefused("wrong_issuer", f"the JWT's issuer is not {self.issuer!r}") from None
        except InvalidAudienceError:
            raise JwtRefused("wrong_audience", f"the JWT's audience is not {self.audience!r}") from None
        except InvalidSignatureError:
            raise JwtRefused("bad_signature", "the JWT's signature does not verify") from None
        except MissingRequiredClaimError as exc:
            raise JwtRefused("missing_claim", f"the JWT has no {exc.claim!r} claim") from None
        except DecodeError as exc:
            raise JwtRefused("malformed", f"not a JWT: {exc}") from None
        except PyJWTError as exc:
            raise JwtRefused("invalid", f"the JWT is not valid: {exc}") from None
        if self.audience is None and "aud" in decoded:
            # PyJWT leaves aud alone when not verifying it; a token meant for another service is not ours.
            raise JwtRefused("wrong_audience", "the JWT names an audience and LIVEDASH_JWT_AUDIENCE is not set")
        return decoded

    def _role(self, claims: dict[str, Any]) -> Role:
        if self.claims.admin and claim(claims, self.claims.admin) is True:
            return Role.ADMIN
        raw = claim(claims, self.claims.role)
        values = raw if isinstance(raw, list) else [raw] if raw is not None else []
        roles: set[Role] = set()
        for value in values:
            if not isinstance(value, str):
                continue
            if value in self.role_map:
                roles.add(self.role_map[value])
            elif value in (Role.VIEWER, Role.EDITOR, Role.ADMIN, Role.DEVICE):
                roles.add(Role(value))
        ranked = [r for r in RANKED if r in roles]
        if ranked:
            return ranked[-1]
        if Role.DEVICE in roles:
            return Role.DEVICE
        if self.default_role is not None:
            return self.default_role
        raise JwtRefused("no_role", f"the JWT's {self.claims.role!r} claim maps to no livedash role")

    def identity(self, claims: dict[str, Any]) -> Identity:
        subject = claim(claims, self.claims.subject)
        if not isinstance(subject, str | int) or isinstance(subject, bool) or str(subject) == "":
            raise JwtRefused("no_subject", f"the JWT has no {self.claims.subject!r} claim to say who it is")
        sub = str(subject)[:200]
        name = next(
            (str(v)[:64] for n in self.claims.names if isinstance(v := claim(claims, n), str) and v.strip()),
            sub[:64],
        )
        raw_scope = claim(claims, self.claims.scope)
        patterns = (
            raw_scope
            if isinstance(raw_scope, list)
            else raw_scope.replace(",", " ").split()
            if isinstance(raw_scope, str)
            else []
        )
        scope = [p for p in patterns if isinstance(p, str) and re.fullmatch(SCOPE_PATTERN, p)]
        if raw_scope is not None and (len(scope) != len(patterns) or not scope):
            # A scope that cannot be read must never widen into no scope at all.
            raise JwtRefused("bad_scope", f"the JWT's {self.claims.scope!r} claim is not a list of topic patterns")
        exp = claim(claims, "exp")
        return Identity(
            role=self._role(claims),
            token_id=f"jwt:{sub}",
            name=name,
            # What rate limits and sessions key on: one person, however many JWTs the issuer hands out.
            token_hash="jwt:" + hashlib.sha256(sub.encode()).hexdigest(),
            scope=TopicFilter(tuple(scope)) if scope else None,
            expires_at=int(float(exp) * 1000) if isinstance(exp, int | float) else None,
            sub=sub,
            kind="jwt",
        )


# --- browser sessions opened with a JWT ------------------------------------------------------
# No token record in Redis to look up: the session keeps the identity the JWT stood for.
def session_identity(identity: Identity) -> str:
    """What a session opened with a JWT stores: the identity, as JSON."""
    return orjson.dumps(
        {
            "role": identity.role,
            "name": identity.name,
            "sub": identity.sub,
            "token_hash": identity.token_hash,
            "scope": list(identity.scope.patterns) if identity.scope else None,
            "exp": identity.expires_at,
        }
    ).decode()


def identity_from_session(raw: str) -> Identity | None:
    """The stored identity; None when unreadable or past the JWT's ``exp``."""
    try:
        data = orjson.loads(raw)
        role = Role(data["role"])
        sub = str(data["sub"])
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
        return None
    exp = data.get("exp")
    if isinstance(exp, int) and exp <= time.time() * 1000:
        return None
    return Identity(
        role=role,
        token_id=f"jwt:{sub}",
        name=str(data.get("name") or sub),
        token_hash=str(data.get("token_hash") or ""),
        scope=TopicFilter(tuple(data["scope"])) if data.get("scope") else None,
        expires_at=exp if isinstance(exp, int) else None,
        sub=sub,
        kind="jwt",
    )

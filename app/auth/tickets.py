"""Stream tickets: how a page's ``EventSource`` (which cannot send a header) opens ``/api/stream``.

A page on another origin holds a credential (a token, or a JWT) that it sends
as a header to ``POST /api/stream/ticket``; the answer is a ticket it puts in
the stream's URL (``/api/stream?ticket=...``). The long-lived credential never
goes into a URL (server logs, proxies, browser history keep URLs); a ticket
in one is worthless soon after:

- **signed** (HMAC-SHA256 with ``SECRET_KEY``): what it says cannot be altered;
- **short-lived**: usable for ``LIVEDASH_STREAM_TICKET_TTL`` seconds (60);
- **single use**: the first use records its id with ``SET NX`` (expiring with
  the ticket), atomically in Redis, so a second use on any worker is refused;
- **scope-limited**: its topics are at most the credential's (asked at mint,
  checked within the credential's scope), and a stream opened with it sees
  no more than both;
- **bound to its credential**: it names the token (by hash) or the session
  behind it, looked up again when it is used, so a ticket of a revoked token,
  or of a session that ended, opens nothing. The stream it opens carries that
  credential like any other, so ``app/auth/revocation.py`` ends it when the
  credential is revoked later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from app.auth.access import Identity, pattern_within
from app.auth.issuer import identity_from_session, session_identity
from app.errors import Forbidden, Unauthorized
from app.events.topics import TopicFilter

if TYPE_CHECKING:
    from app.auth.guard import Guard

PURPOSE = b"livedash stream ticket v1"


@dataclass(frozen=True)
class Ticket:
    id: str
    expires_at: int  # Unix ms
    credential: dict[str, Any]  # what to look up again: {"kind": "token"|"bootstrap"|"session"|"jwt", ...}
    topics: tuple[str, ...] | None  # None: whatever the credential sees


def _key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(ticket: Ticket, secret_key: str) -> str:
    payload = orjson.dumps(
        {"id": ticket.id, "exp": ticket.expires_at, "cred": ticket.credential, "topics": ticket.topics}
    )
    body = _b64(payload)
    signature = _b64(hmac.new(_key(secret_key), body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def decode(raw: str, secret_key: str) -> Ticket | None:
    """The ticket, if its signature is ours; None otherwise (its time is checked by the caller)."""
    body, _, signature = raw.partition(".")
    if not body or not signature or len(raw) > 8_192:
        return None
    expected = _b64(hmac.new(_key(secret_key), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return None
    try:
        data = orjson.loads(_unb64(body))
        topics = data["topics"]
        return Ticket(
            id=str(data["id"]),
            expires_at=int(data["exp"]),
            credential=dict(data["cred"]),
            topics=tuple(str(t) for t in topics) if topics is not None else None,
        )
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def credential_of(identity: Identity) -> dict[str, Any]:
    """What a ticket records to find ``identity`` again when it is used (never a secret)."""
    if identity.kind == "jwt":
        # Nothing in Redis names a JWT: the identity itself (signed with the ticket), until its exp.
        return {"kind": "jwt", "identity": session_identity(identity)}
    if identity.session_id is not None:
        return {"kind": "session", "id": identity.session_id}
    if identity.kind == "bootstrap":
        return {"kind": "bootstrap", "hash": identity.token_hash}
    return {"kind": "token", "hash": identity.token_hash}


def ticket_topics(identity: Identity, requested: TopicFilter) -> tuple[str, ...] | None:
    """The topics a ticket may carry: what was asked, each within the credential's scope (else 403)."""
    scope = identity.scope
    if requested.everything:
        # Everything the credential sees: its scope (or all, for an unscoped one).
        return None if scope is None or scope.everything else tuple(scope.patterns)
    patterns = tuple(requested.patterns)
    if scope is not None and not scope.everything:
        outside = [p for p in patterns if not any(pattern_within(p, allowed) for allowed in scope.patterns)]
        if outside:
            raise Forbidden(
                f"topics {outside} are outside this credential's scope {list(scope.patterns)}", code="out_of_scope"
            )
    return patterns


def mint(identity: Identity, topics: tuple[str, ...] | None, secret_key: str, ttl: float) -> tuple[str, Ticket]:
    ticket = Ticket(
        id=secrets.token_hex(16),
        expires_at=int((time.time() + ttl) * 1000),
        credential=credential_of(identity),
        topics=topics,
    )
    return encode(ticket, secret_key), ticket


def _refused(reason: str, detail: str) -> Unauthorized:
    return Unauthorized(f"stream ticket refused ({reason}): {detail}", code="bad_ticket", body={"reason": reason})


async def redeem(guard: Guard, raw: str) -> Identity:
    """The identity a ticket stands for, used up by this call; ``Unauthorized`` (with a reason) otherwise.

    Reasons: ``invalid`` (not ours, or altered), ``expired``, ``used`` (a
    second use, on any worker), ``revoked`` (the token or session behind it
    is gone).
    """
    secret_key = guard.settings.secret_key or ""
    ticket = decode(raw, secret_key)
    if ticket is None:
        raise _refused("invalid", "not a ticket this server issued")
    now = time.time() * 1000
    if ticket.expires_at <= now:
        raise _refused("expired", "ask POST /api/stream/ticket for a new one")
    # Single use: the first SET NX wins; the key lives as long as the ticket could.
    fresh = await guard.tokens.redis.set(
        guard.tokens.keys.stream_ticket(ticket.id), b"1", nx=True, px=max(1, int(ticket.expires_at - now) + 1_000)
    )
    if not fresh:
        raise _refused("used", "a ticket opens one stream; ask for another")
    identity = await _identity(guard, ticket.credential)
    if identity is None:
        raise _refused("revoked", "the credential behind this ticket was revoked, expired or signed out")
    if ticket.topics is not None:
        # Its topics are within the credential's scope (checked at mint): they are now the stream's scope.
        identity = replace(identity, scope=TopicFilter(ticket.topics))
    # The stream then lives as long as its credential does (the re-check ends it): the ticket only opens it.
    return identity


async def _identity(guard: Guard, credential: dict[str, Any]) -> Identity | None:
    kind = credential.get("kind")
    if kind == "token":
        digest = str(credential.get("hash", ""))
        record = await guard.tokens.by_hash(digest)
        return None if record is None else guard.identity_of(record, digest)
    if kind == "bootstrap":
        return guard.bootstrap_identity() if guard.is_bootstrap_hash(str(credential.get("hash", ""))) else None
    if kind == "session":
        session = await guard.sessions.get(str(credential.get("id", "")))
        return None if session is None else await guard.from_session(session)
    if kind == "jwt":
        return identity_from_session(str(credential.get("identity", ""))) if guard.jwt is not None else None
    return None

"""Who may do what: identities, the access decision for a route, and topic scopes.

Free of I/O: ``app/auth/guard.py`` finds the caller's ``Identity`` and asks
this module. Each route declares who may call it next to its handler
(``@route(..., access=READ)``, ``app/web/routing.py``); this module reads
those declarations by endpoint name. A route with no declaration needs an
admin (fail closed), and a test checks that every registered route has one,
so a new route gets a conscious decision.

Scopes are topic patterns (``device/line-2-*``, ``room/dashboard``). A room
``device:<d>`` belongs to its device: a scope that shows ``device/<d>`` shows
its presence too (its events are on ``room/device:<d>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.auth.tokens import Role, TokenCreate
from app.documents.versioned import Actor
from app.events.topics import TopicFilter
from app.web.routing import declaration

if TYPE_CHECKING:
    from app.events.hub import Claim

READ = frozenset({Role.VIEWER, Role.EDITOR, Role.ADMIN})
ANNOTATE = frozenset({Role.EDITOR, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})
INGEST = frozenset({Role.DEVICE, Role.ADMIN})
# Anyone with any valid credential (a device may log out of nothing, but may ask who it is).
ANY = frozenset(Role)

# A route's access rule, in its declaration: roles allowed, or PUBLIC (no credential needed).
PUBLIC = None


def allowed_roles(endpoint: str | None) -> frozenset[Role] | None:
    """The roles the route's declaration allows (None: public); ADMIN for anything undeclared."""
    declared = declaration(endpoint)
    if declared is None:
        # No route matched (the 404/405 handler answers, but never for free), or nobody declared it.
        return ADMIN
    return declared.access


def csrf_exempt(endpoint: str | None) -> bool:
    """A cookie-authenticated write that needs no X-CSRF-Token (its declaration says why)."""
    declared = declaration(endpoint)
    return declared is not None and declared.csrf_exempt


def rate_exempt(endpoint: str | None) -> bool:
    """A write that does not count against the per-token write rate (the way in and out)."""
    declared = declaration(endpoint)
    return declared is not None and declared.rate_exempt


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller of one request, however it proved who it is."""

    role: Role
    token_id: str  # the token's public id; "bootstrap" (LIVEDASH_ADMIN_TOKEN); "anonymous" (auth off)
    name: str
    token_hash: str  # what the re-check asks Redis about ("" when there is nothing to check)
    scope: TopicFilter | None = None
    devices: frozenset[str] | None = None
    expires_at: int | None = None  # Unix ms: the token's or the session's end, whichever is first
    session_id: str | None = None  # set when the credential is a browser session
    csrf: str | None = field(default=None, repr=False)
    # The stable id of who this is: None means the token id (opaque tokens); a JWT's `sub`.
    sub: str | None = None
    # How it proved it: "token" (opaque, stored), "bootstrap", "metrics", "jwt", "anonymous" (auth off).
    kind: str = "token"

    @property
    def via_cookie(self) -> bool:
        return self.session_id is not None

    @property
    def subject(self) -> str:
        """Stable across renames: the token id for livedash's tokens, ``jwt:<sub>`` for an issuer's JWTs."""
        return f"jwt:{self.sub}" if self.kind == "jwt" and self.sub else self.token_id

    def actor(self, declared: str | None = None) -> Actor:
        """Who a write or a heartbeat is by: this identity, never a request body.

        Only with authentication off (``ANONYMOUS``) is there nobody to ask, so
        the name a person typed (``declared``) is used, marked self-declared.
        """
        if self.kind == "anonymous":
            return Actor(name=declared or None, subject=None, self_declared=True)
        return Actor(name=self.name, subject=self.subject, self_declared=False)

    @property
    def who(self) -> str:
        return f"{self.name} ({self.role}, {self.token_id})"

    def sees_topic(self, topic: str) -> bool:
        return scope_allows(self.scope, topic)

    def sees_device(self, device: str) -> bool:
        return scope_allows(self.scope, f"device/{device}")

    def sees_room(self, room: str) -> bool:
        return scope_allows(self.scope, f"room/{room}")

    def may_write_device(self, device: str) -> bool:
        if self.devices is not None and device not in self.devices:
            return False
        return self.sees_device(device)


ANONYMOUS = Identity(role=Role.ADMIN, token_id="anonymous", name="anonymous", token_hash="", kind="anonymous")


def scope_allows(scope: TopicFilter | None, topic: str) -> bool:
    if scope is None or scope.matches(topic):
        return True
    if topic.startswith("room/device:"):
        # A device's room shows with the device.
        return scope.matches("device/" + topic[len("room/device:") :])
    return False


class ScopedTopics(TopicFilter):
    """The topics a request asked for, narrowed to what its caller may see.

    It is what the stream and the polling view hand to the broker and the log
    scan, so every path that filters events applies the scope. It also
    carries the identity, which is how the re-check (``app/auth/revocation.py``)
    finds the credential behind each open stream.
    """

    __slots__ = ("claim", "identity", "reauth_sent", "scope", "stream")

    def __init__(self, requested: TopicFilter, identity: Identity, *, stream: bool) -> None:
        super().__init__(requested.patterns)
        self.identity = identity
        self.scope = identity.scope
        self.stream = stream
        self.reauth_sent: int | None = None
        # The stream slot counted when the open was allowed (guard.scoped_topics), until it subscribes.
        self.claim: Claim | None = None

    @property
    def everything(self) -> bool:
        return self.scope is None and super().everything

    @property
    def owner(self) -> str | None:
        return self.identity.token_id if self.stream else None

    def take_claim(self) -> bool:
        claim, self.claim = self.claim, None
        if claim is None:
            return False
        claim.transfer()
        return True

    def matches(self, topic: str) -> bool:
        return super().matches(topic) and scope_allows(self.scope, topic)


# --- who may make which token ----------------------------------------------------
# Roles are ordered viewer < editor < admin; device is apart (it only ingests).
RANKED = (Role.VIEWER, Role.EDITOR, Role.ADMIN)


def mintable_roles(role: Role) -> frozenset[Role]:
    """The roles a credential of ``role`` may give a token it makes: never a higher one.

    An admin may also make device tokens (they only post readings) and
    metrics tokens (they only read ``/metrics``); a device or metrics
    credential only tokens of its own kind.
    """
    if role in (Role.DEVICE, Role.METRICS):
        return frozenset({role})
    mintable = set(RANKED[: RANKED.index(role) + 1])
    if role is Role.ADMIN:
        mintable |= {Role.DEVICE, Role.METRICS}
    return frozenset(mintable)


def pattern_within(requested: str, allowed: str) -> bool:
    """Is every topic ``requested`` matches also matched by ``allowed``? Decided conservatively.

    Yes when they are equal, or when ``allowed`` matches ``requested`` read as
    a plain topic, its ``*`` taken as literal characters. That is sound: a
    literal ``*`` of ``requested`` can only be absorbed by a star of
    ``allowed`` (the literal runs of a pattern never hold a ``*``), and that
    star absorbs whatever the ``*`` stands for just as well; the literal
    characters around it match as they did. So ``device/line-2-*`` holds
    ``device/line-2-a`` and ``device/line-2-a*``, and not ``device/line-*``
    nor ``*``. It can say no to a pattern that is in fact within (a scope's
    patterns are not combined, and ``room/device:<d>``, which a scope showing
    ``device/<d>`` also shows, is not inferred): the safe direction.
    """
    return requested == allowed or TopicFilter((allowed,)).matches(requested)


def mint_refusal(caller: Identity, spec: TokenCreate) -> tuple[str, str] | None:
    """Why ``caller`` may not make the token ``spec`` asks for, as (code, detail); None if it may.

    A token makes tokens only within its own role, topic scope and devices, so
    a scoped or device-limited admin cannot step out of its bounds by minting
    a wider credential.
    """
    if spec.role not in mintable_roles(caller.role):
        return "role_too_high", f"a {caller.role} credential cannot make a {spec.role} token"
    if caller.scope is not None and not caller.scope.everything:
        allowed = list(caller.scope.patterns)
        if not spec.scope:
            return "out_of_scope", (
                f"this credential is scoped to {allowed}: a token it makes must carry a scope within it"
            )
        outside = [p for p in spec.scope if not any(pattern_within(p, a) for a in allowed)]
        if outside:
            return "out_of_scope", (
                f"scope pattern(s) {outside} are not within this credential's scope {allowed} "
                "(each must equal one of its patterns, or be matched by one with its own '*' read literally)"
            )
    if caller.devices is not None:
        allowed_devices = sorted(caller.devices)
        if spec.devices is None:
            return "out_of_scope", (
                f"this credential may only write for {allowed_devices[:10]}: a token it makes must name "
                "devices among them"
            )
        extra = sorted(set(spec.devices) - caller.devices)
        if extra:
            return "out_of_scope", f"device(s) {extra[:10]} are not among this credential's devices"
    return None

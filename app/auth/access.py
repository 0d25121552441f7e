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

from app.auth.tokens import Role
from app.events.topics import TopicFilter
from app.web.routing import declaration

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

    @property
    def via_cookie(self) -> bool:
        return self.session_id is not None

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


ANONYMOUS = Identity(role=Role.ADMIN, token_id="anonymous", name="anonymous", token_hash="")


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

    __slots__ = ("identity", "reauth_sent", "scope", "stream")

    def __init__(self, requested: TopicFilter, identity: Identity, *, stream: bool) -> None:
        super().__init__(requested.patterns)
        self.identity = identity
        self.scope = identity.scope
        self.stream = stream
        self.reauth_sent: int | None = None

    @property
    def everything(self) -> bool:
        return self.scope is None and super().everything

    def matches(self, topic: str) -> bool:
        return super().matches(topic) and scope_allows(self.scope, topic)

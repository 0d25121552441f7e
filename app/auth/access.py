"""Who may do what: identities, the route → role map, and topic scopes.

Free of I/O: ``app/auth.py`` finds the caller's ``Identity`` and asks this
module. Every route is listed in ``ACCESS`` by its endpoint name; a route
that is not listed needs an admin (fail closed), and a test checks that
every registered route is listed, so a new route gets a conscious decision.

Scopes are topic patterns (``device/line-2-*``, ``room/dashboard``). A room
``device:<d>`` belongs to its device: a scope that shows ``device/<d>`` shows
its presence too (its events are on ``room/device:<d>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.auth.tokens import Role
from app.events.topics import TopicFilter

READ = frozenset({Role.VIEWER, Role.EDITOR, Role.ADMIN})
ANNOTATE = frozenset({Role.EDITOR, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})
INGEST = frozenset({Role.DEVICE, Role.ADMIN})
# Anyone with any valid credential (a device may log out of nothing, but may ask who it is).
ANY = frozenset(Role)

# endpoint -> roles allowed; None: public (no credential needed).
ACCESS: dict[str, frozenset[Role] | None] = {
    # public: liveness for load balancers, assets, the way in
    "health.healthz": None,
    "health.readyz": None,
    "static": None,
    "auth.login_page": None,
    "auth.login": None,
    # the API's description holds no data, and is how a newcomer learns to get a token
    "docs.docs_page": None,
    "docs.openapi_json": None,
    "docs.docs_css": None,
    # pages and fragments
    "dashboard.index": READ,
    "dashboard.tiles": READ,
    "dashboard.note": READ,
    "dashboard.rule": READ,
    "series_page.series": READ,
    # live views and snapshots
    "stream.stream": READ,
    "events.poll": READ,
    "metrics.latest": READ,
    "metrics.series": READ,
    "annotations.list_annotations": READ,
    "annotations.fetch": READ,
    "annotations.revisions": READ,
    "alerts.list_rules": READ,
    "alerts.states": READ,
    "alerts.fetch": READ,
    "alerts.revisions": READ,
    "presence.snapshot": READ,
    "presence.heartbeat": READ,
    "presence.leave": READ,
    "prometheus.metrics": READ,
    # writes
    "metrics.ingest": INGEST,
    "write.write": INGEST,
    "annotations.create": ANNOTATE,
    "annotations.update": ANNOTATE,
    "annotations.delete": ANNOTATE,
    "alerts.create": ADMIN,
    "alerts.update": ADMIN,
    "alerts.delete": ADMIN,
    # sessions, tokens, audit
    "auth.logout": ANY,
    "auth.whoami": ANY,
    "auth.renew": ANY,
    "tokens.list_tokens": ADMIN,
    "tokens.create": ADMIN,
    "tokens.revoke": ADMIN,
    "tokens.audit": ADMIN,
}

# Cookie-authenticated POSTs that need no CSRF token, and why:
# - presence.leave is sent with navigator.sendBeacon, which cannot set headers;
#   forging one needs the tab's random session id, and only ends that tab's
#   presence early (its next heartbeat restores it).
CSRF_EXEMPT = frozenset({"auth.login", "presence.leave"})
# Writes that do not count against the per-token write rate (the way in and out).
RATE_EXEMPT = frozenset({"auth.login", "auth.logout", "auth.renew"})


def allowed_roles(endpoint: str | None) -> frozenset[Role] | None:
    if endpoint is None:
        return ADMIN  # no route matched: the 404/405 handler answers, but never for free
    return ACCESS.get(endpoint, ADMIN)


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
    carries the identity, which is how the re-check (``app/revocation.py``)
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

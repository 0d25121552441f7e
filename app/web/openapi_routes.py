"""What each route takes and answers: the table ``app/openapi.py`` builds the document from.

A new route gets an entry here (``tests/test_openapi.py`` fails without one).
Bodies and answers name component schemas, which come from the pydantic
models in ``openapi.MODELS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LOG_EVENT_TYPES = ("metric", "annotation", "alert_rule", "alert", "presence")
CONTROL_EVENT_TYPES = ("ready", "reset", "ping", "status", "bye")


@dataclass(frozen=True)
class Param:
    name: str
    where: str = "query"
    description: str = ""
    type: str = "string"
    required: bool = False


@dataclass(frozen=True)
class Op:
    """One documented operation: what it takes and what it answers."""

    method: str
    path: str
    summary: str
    tag: str
    description: str = ""
    params: tuple[Param, ...] = ()
    body: str | None = None  # a component schema name, or "lines" (line protocol) / "readings"
    ok: int = 200
    ok_schema: str | None = None
    ok_type: str = "application/json"
    errors: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


TOPICS = Param(
    "topics",
    description="comma list of topic patterns, `*` wildcards (device/pump-*); default all. "
    "At most 64 patterns of 200 characters, each with at most 8 `*`.",
)
DEVICE = Param("device", description="a device slug")
METRIC = Param("metric", description="a metric slug")
IF_MATCH = Param("If-Match", "header", 'the version you edited, as its ETag ("3"); or send version in the body')
ANN_ID = Param("annotation_id", "path", required=True)
RULE_ID = Param("rule_id", "path", required=True)
WRITE_ERRORS = (400, 409, 410, 413, 415, 422, 503)

STREAM_DESCRIPTION = f"""Server-Sent Events: the live view of the event log.

Each log event is one SSE message: `id:` the event id, `event:` its type, `data:`
the Event object as JSON (`format=json`, default) or a rendered HTML fragment
(`format=html`, for htmx).

Log event types: {", ".join(f"`{t}`" for t in LOG_EVENT_TYPES)}.

Control events (not in the log): `ready` (first, `data: {{"cursor"}}`, its id is
where the stream starts), `reset` (the Last-Event-ID is older than the kept log,
or the log was lost: re-fetch snapshots, then continue), `ping` (every keep-alive
interval, `data: {{"ts"}}`), `status` (`{{"state": "stale"|"live"}}` while storage
is unreachable and back), `bye` (the server is shutting down; reconnect after the
short `retry:`).

Resume with the `Last-Event-ID` header (or `last_event_id=`): missed events are
replayed first. A stream that stops reading is dropped as a slow consumer and
resumes the same way. At the per-process stream limit the answer is 503 with
Retry-After (use `/api/events`)."""

ROUTES: tuple[Op, ...] = (
    Op("get", "/", "The dashboard (HTML)", "pages", ok_type="text/html"),
    Op(
        "get",
        "/series/{device}/{metric}",
        "One series' page (HTML)",
        "pages",
        ok_type="text/html",
        params=(Param("device", "path", required=True), Param("metric", "path", required=True)),
    ),
    Op("get", "/fragments/tiles", "The tiles fragment (htmx)", "pages", ok_type="text/html"),
    Op(
        "get",
        "/fragments/note/{annotation_id}",
        "One annotation as a fragment (htmx)",
        "pages",
        ok_type="text/html",
        params=(ANN_ID,),
        errors=(404,),
    ),
    Op(
        "get",
        "/fragments/rule/{rule_id}",
        "One alert rule as a fragment (htmx)",
        "pages",
        ok_type="text/html",
        params=(RULE_ID,),
        errors=(404,),
    ),
    Op(
        "get",
        "/api/stream",
        "Follow the event log (SSE)",
        "events",
        STREAM_DESCRIPTION,
        params=(
            TOPICS,
            Param("format", description="json (default) or html"),
            Param("last_event_id", description="resume after this id (for clients that cannot set headers)"),
            Param("Last-Event-ID", "header", "resume after this id"),
        ),
        ok_type="text/event-stream",
        errors=(400, 503),
        extra={"x-event-types": list(LOG_EVENT_TYPES), "x-control-event-types": list(CONTROL_EVENT_TYPES)},
    ),
    Op(
        "get",
        "/api/events",
        "Poll the event log",
        "events",
        "The polling view of the same log; `wait` makes it a long poll. An unknown or expired `since` answers "
        "`reset: true` with a `reset` event, never an error.",
        params=(
            Param("since", description="id of the last event you have"),
            TOPICS,
            Param("wait", description="seconds to wait for an event (long poll)", type="number"),
            Param("limit", description="most events to return", type="integer"),
        ),
        ok_schema="EventPage",
        errors=(400,),
    ),
    Op(
        "post",
        "/api/metrics",
        "Ingest one reading or a batch",
        "readings",
        "JSON (one object or a list) or a form. A batch is validated whole: all stored, or a 422 naming each bad "
        "field (`3.value`).",
        body="readings",
        ok=202,
        ok_schema="Accepted",
        errors=(400, 413, 415, 422, 503),
    ),
    Op(
        "post",
        "/api/write",
        "Ingest InfluxDB line protocol (Telegraf)",
        "readings",
        "`measurement[,tag=v] field=v[,field=v] [ts]`. The device tag (default `device`) names the device; a field "
        "named `value` keeps the measurement as metric, another field `f` gives `measurement.f`; other tags become "
        "tags; string and boolean fields are skipped. Validated whole; 400/422 name the line. Answers 204 with "
        "X-Livedash-Accepted / X-Livedash-Skipped-Fields / X-Livedash-Cursor headers.",
        params=(
            Param("precision", description="timestamp unit: ns (default), us, ms, s"),
            Param("db", description="ignored (Telegraf sends it)"),
        ),
        body="lines",
        ok=204,
        ok_type="",
        errors=(400, 413, 415, 422, 503),
    ),
    Op(
        "get", "/api/metrics/latest", "Latest value of every series", "readings", params=(DEVICE, METRIC), errors=(400,)
    ),
    Op(
        "get",
        "/api/metrics/series",
        "Recent history of series",
        "readings",
        params=(DEVICE, METRIC, Param("limit", type="integer", description="points per series")),
        errors=(400,),
    ),
    Op(
        "get",
        "/api/annotations",
        "List annotations",
        "annotations",
        params=(
            DEVICE,
            METRIC,
            Param("since", type="integer", description="from this time (epoch ms)"),
            Param("until", type="integer", description="up to this time (epoch ms)"),
        ),
    ),
    Op(
        "post",
        "/api/annotations",
        "Create an annotation",
        "annotations",
        "201 with `id`, `version: 1`, ETag.",
        body="AnnotationCreate",
        ok=201,
        errors=(400, 413, 415, 422, 503),
    ),
    Op("get", "/api/annotations/{annotation_id}", "One annotation", "annotations", params=(ANN_ID,), errors=(404, 410)),
    Op(
        "get",
        "/api/annotations/{annotation_id}/revisions",
        "An annotation's revisions",
        "annotations",
        params=(ANN_ID,),
        errors=(404,),
    ),
    Op(
        "post",
        "/api/annotations/{annotation_id}",
        "Update an annotation",
        "annotations",
        "With `version` (body) or If-Match: applied only if it matches, else 409 with the current annotation. "
        "Without: last write wins.",
        params=(ANN_ID, IF_MATCH),
        body="AnnotationUpdate",
        errors=WRITE_ERRORS,
    ),
    Op(
        "post",
        "/api/annotations/{annotation_id}/delete",
        "Delete an annotation",
        "annotations",
        "Same version rules as an update.",
        params=(ANN_ID, IF_MATCH),
        body="Precondition",
        errors=WRITE_ERRORS,
    ),
    Op(
        "delete",
        "/api/annotations/{annotation_id}",
        "Delete an annotation",
        "annotations",
        params=(ANN_ID, IF_MATCH),
        errors=WRITE_ERRORS,
    ),
    Op("get", "/api/alerts/rules", "List alert rules", "alerts", params=(DEVICE, METRIC)),
    Op("get", "/api/alerts/state", "Firing and resolved state of each rule", "alerts"),
    Op(
        "post",
        "/api/alerts/rules",
        "Create an alert rule",
        "alerts",
        body="RuleCreate",
        ok=201,
        errors=(400, 413, 415, 422, 503),
    ),
    Op("get", "/api/alerts/rules/{rule_id}", "One alert rule", "alerts", params=(RULE_ID,), errors=(404, 410)),
    Op(
        "get", "/api/alerts/rules/{rule_id}/revisions", "A rule's revisions", "alerts", params=(RULE_ID,), errors=(404,)
    ),
    Op(
        "post",
        "/api/alerts/rules/{rule_id}",
        "Update an alert rule",
        "alerts",
        "Same version rules as annotations.",
        params=(RULE_ID, IF_MATCH),
        body="RuleUpdate",
        errors=WRITE_ERRORS,
    ),
    Op(
        "post",
        "/api/alerts/rules/{rule_id}/delete",
        "Delete an alert rule",
        "alerts",
        params=(RULE_ID, IF_MATCH),
        body="Precondition",
        errors=WRITE_ERRORS,
    ),
    Op(
        "delete",
        "/api/alerts/rules/{rule_id}",
        "Delete an alert rule",
        "alerts",
        params=(RULE_ID, IF_MATCH),
        errors=WRITE_ERRORS,
    ),
    Op("post", "/api/presence", "Presence heartbeat", "presence", body="Heartbeat", errors=(400, 415, 422, 503)),
    Op("post", "/api/presence/leave", "Leave a room", "presence", body="Leave", errors=(400, 415, 422, 503)),
    Op(
        "get",
        "/api/presence",
        "Who is in a room",
        "presence",
        params=(Param("room", required=True, description="a room: dashboard, device/pump-1, ..."),),
        errors=(400,),
    ),
    Op(
        "get",
        "/login",
        "Login form, or exchange ?token= for a session cookie",
        "auth",
        ok_type="text/html",
        params=(Param("token", description="a token (from a login link)"), Param("next", description="where to go")),
        errors=(401,),
    ),
    Op(
        "post",
        "/login",
        "Exchange a token (form field token) for a session cookie",
        "auth",
        ok=303,
        ok_type="",
        errors=(401,),
    ),
    Op("post", "/logout", "End the browser session", "auth", ok=303, ok_type=""),
    Op("get", "/api/session", "Who the caller is (role, scope, expiry)", "auth", errors=(401,)),
    Op("post", "/api/session/renew", "Renew the browser session", "auth", errors=(400, 401)),
    Op("get", "/api/tokens", "List tokens (admin; never a plaintext)", "auth", errors=(401, 403)),
    Op(
        "post",
        "/api/tokens",
        "Create a token (admin); its plaintext is answered once",
        "auth",
        ok=201,
        errors=(400, 401, 403, 415, 422),
    ),
    Op(
        "post",
        "/api/tokens/{token_id}/revoke",
        "Revoke a token (admin); its streams end",
        "auth",
        params=(Param("token_id", "path", required=True),),
        errors=(401, 403, 404),
    ),
    Op(
        "delete",
        "/api/tokens/{token_id}",
        "Revoke a token (admin)",
        "auth",
        params=(Param("token_id", "path", required=True),),
        errors=(401, 403, 404),
    ),
    Op(
        "get",
        "/api/audit",
        "The audit log, newest first (admin): token changes, logins, refusals, writes to annotations and rules",
        "auth",
        params=(Param("limit", type="integer"),),
        errors=(401, 403),
    ),
    Op("get", "/healthz", "The process answers", "operations"),
    Op("get", "/readyz", "Redis answers and the event reader runs", "operations", errors=(503,)),
    Op("get", "/metrics", "Prometheus metrics (all workers)", "operations", ok_type="text/plain"),
    Op("get", "/openapi.json", "This document", "operations"),
    Op("get", "/docs", "This document as an HTML page", "operations", ok_type="text/html"),
    Op("get", "/docs.css", "The docs page's stylesheet", "operations", ok_type="text/css"),
)

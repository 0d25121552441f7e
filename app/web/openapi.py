"""The OpenAPI 3.1 document, built from the pydantic models and the route declarations.

Why not quart-schema: it documents a route by wrapping it in its own request
validation (``@validate_request``) and error responses, while ours parse JSON
*or* forms (htmx posts forms) through ``bodies.json_or_form`` and answer every
error through the one handler in ``errors.py`` (``{"error", "detail"}``). Its
streaming support also cannot describe an SSE stream's event types. So the
document is assembled here: component schemas come from the same pydantic
models the routes validate with (``models_json_schema``), and each route's
declaration (``@route`` next to its handler, ``app/web/routing.py``) says what
it takes and answers. ``build(app)`` walks ``app.url_map``, so a route nobody
described still appears (from its docstring, marked ``x-undocumented``) and
tests can insist that every route is described.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Quart

from app.alerts.channels import ChannelCreate, ChannelUpdate
from app.alerts.marks import SilenceBody
from app.auth.tokens import TokenCreate, TokenUpdate
from app.documents.alert_rules import RuleCreate, RuleUpdate
from app.documents.annotations import AnnotationCreate, AnnotationUpdate, Precondition
from app.ingest.readings import Reading
from app.presence import Heartbeat, Leave
from app.settings import Settings
from app.web.openapi_schemas import FORM, REF, component_schemas
from app.web.routing import TAGS, FromSettings, Op, Param, Route, declaration, openapi_path

VERSION = "0.1.0"


class Event(BaseModel):
    """One entry of the event log: the same object on the stream (``data:``) and in ``/api/events``."""

    model_config = ConfigDict(title="Event")

    id: str = Field(description="monotonic, resumable id (`<ms>-<seq>`); send it back as Last-Event-ID or since")
    type: str = Field(description="metric, annotation, alert_rule, alert, presence (and reset in /api/events)")
    topic: str = Field(description="e.g. device/pump-1, room/dashboard")
    ts: int = Field(description="when the event was logged, Unix epoch ms")
    data: dict[str, Any] = Field(description="the payload; its shape depends on type")
    html: str | None = Field(
        None, description="only with format=html (/api/events): the rendered fragment, empty when the type has none"
    )


class Error(BaseModel):
    """Every error, with its HTTP status: 400 401 403 404 405 409 410 413 415 422 429 503."""

    error: str = Field(description="a stable code: bad_request, invalid, conflict, not_found, unavailable, ...")
    detail: Any = Field(None, description="what was wrong: a message, or a list of {field, error} (or {line, error})")


class Accepted(BaseModel):
    accepted: int = Field(description="readings stored")
    too_old: int = Field(
        0, description="of those, readings older than every history tier: they count for latest and events only"
    )
    cursor: str = Field(description="id of the last metric event written")


class EventPage(BaseModel):
    events: list[Event]
    cursor: str = Field(description="pass as since= on the next call")
    reset: bool | None = Field(None, description="true when since was unknown or expired: re-fetch snapshots")


class Login(BaseModel):
    """The login form (``POST /login``): a token, and where to go after."""

    token: str = Field(description="a token (ldt_...)")
    next: str = Field("/", description="a local path to go to after logging in")


# Request bodies (each also gets a form variant, <Name>Form: app/web/openapi_schemas.py), then answers.
BODIES: list[type[BaseModel]] = [
    Reading,
    AnnotationCreate,
    AnnotationUpdate,
    Precondition,
    RuleCreate,
    RuleUpdate,
    Heartbeat,
    Leave,
    TokenCreate,
    TokenUpdate,
    SilenceBody,
    ChannelCreate,
    ChannelUpdate,
    Login,
]
MODELS: list[type[BaseModel]] = [*BODIES, Event, Error, Accepted, EventPage]


def _schemas() -> dict[str, Any]:
    return component_schemas(MODELS, BODIES)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _body(op: Op, settings: Settings | None) -> dict[str, Any]:
    kind = op.body
    assert kind is not None
    if kind == "lines":
        lines = {"type": "string", "pattern": _line_protocol(settings.line_device_tag if settings else "device")}
        return {"required": True, "content": {"text/plain": {"schema": lines}}}
    form: dict[str, Any] = {"schema": _ref(f"{'Reading' if kind == 'readings' else kind}{FORM}")}
    if op.form_only:
        return {"required": op.body_required, "content": {"application/x-www-form-urlencoded": form}}
    schema: dict[str, Any] = _ref(kind)
    if kind == "readings":
        batch = {"type": "array", "items": _ref("Reading"), "minItems": 1, "maxItems": FromSettings("max_batch")}
        schema = {"oneOf": [_ref("Reading"), _resolved(batch, settings)]}
    return {
        "required": op.body_required,
        "content": {"application/json": {"schema": schema}, "application/x-www-form-urlencoded": form},
    }


def _line_protocol(device_tag: str) -> str:
    """Lines that are readings for sure: a measurement, the device tag, one numeric field, no time (server time).

    More is accepted (docs/ingest.md): other tags, several fields, timestamps in range, escapes. A
    measurement without '.' keeps ``measurement.field`` a slug of at most 64 characters.
    """
    name = r"[A-Za-z0-9_-]{1,31}"
    tag = device_tag.replace(".", "\\.")
    line = rf"{name},{tag}=[A-Za-z0-9_.-]{{1,64}} {name}=-?[0-9]{{1,12}}(?:\.[0-9]{{1,6}})?"
    return rf"^{line}(?:\n{line}){{0,9}}\n?$"


def _resolved(value: Any, settings: Settings | None) -> Any:
    """A schema with its FromSettings values read from the app's settings."""
    if isinstance(value, FromSettings):
        return getattr(settings, value.setting) if settings is not None else None
    if isinstance(value, Mapping):
        return {k: _resolved(v, settings) for k, v in value.items() if _resolved(v, settings) is not None}
    if isinstance(value, list | tuple):
        return [_resolved(v, settings) for v in value]
    return value


def _parameter(p: Param, settings: Settings | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": p.name,
        "in": p.where,
        "required": p.required or p.where == "path",
        "description": p.description,
        "schema": {"type": p.type, **_resolved(p.schema, settings)},
    }
    if p.type == "array" and p.where == "query":
        out["style"], out["explode"] = "form", p.explode
    if p.type in ("integer", "number") and p.where == "query" and not out["required"]:
        # bodies.int_arg / float_arg: an empty value (an htmx form's empty field) is the default.
        out["schema"] = {"anyOf": [out["schema"], {"type": "string", "maxLength": 0}]}
    return out


def _is_page(op: Op) -> bool:
    # app/auth/guard.py's _is_page: a GET outside /api/ and /fragments/ (a browser is sent to /login).
    return op.method == "get" and not op.path.startswith(("/api/", "/fragments/"))


def _success(op: Op) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    content: dict[str, Any] = {}
    if isinstance(op.ok_schema, Mapping):
        schema: dict[str, Any] = dict(op.ok_schema)
    elif op.ok_schema:
        schema = _ref(op.ok_schema)
    else:
        schema = {"type": "object"} if op.ok_type == "application/json" else {"type": "string"}
    if op.ok_type:
        content[op.ok_type] = {"schema": schema}
    for kind in op.ok_also:
        content.setdefault(kind, {"schema": {"type": "string"}})
    if op.htmx:
        content.setdefault("text/html", {"schema": {"type": "string"}})
        ok["description"] = "OK (with HX-Request: an HTML fragment)"
    if content:
        ok["content"] = content
    return ok


def _responses(op: Op, access: frozenset[Any] | None, rate_exempt: bool) -> dict[str, Any]:
    """What the operation answers: its own statuses, and those every door adds (app/auth/guard.py).

    Any request may carry a credential, and a bad one is 401 everywhere; a
    route with an access rule also answers 401 without one and 403 for a
    wrong role, scope or CSRF token; a browser asking for a page is sent to
    ``/login`` instead (303); a write counts against the token's write rate
    (429); storage that cannot be reached is 503 anywhere.
    """
    statuses: dict[int, Any] = {op.ok: _success(op)}
    for status, answer in op.answers.items():
        statuses[status] = dict(answer)
    errors = set(op.errors) | {401, 503}
    if access is not None:
        errors.add(403)
        if _is_page(op):
            statuses.setdefault(303, LOGIN_REDIRECT)
        if op.method != "get" and not rate_exempt:
            errors.add(429)
    for status in errors:
        statuses.setdefault(status, {"$ref": "#/components/responses/Error"})
    return {str(status): statuses[status] for status in sorted(statuses)}


LOGIN_REDIRECT = {
    "description": "A browser (Accept: text/html) without a session is sent to the login form; other clients get 401.",
    "headers": {"Location": {"schema": {"type": "string"}, "description": "/login?next=<this page>"}},
}


def _operation(op: Op, spec: Route, settings: Settings | None) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "operationId": _operation_id(op)}
    if op.description:
        out["description"] = op.description
    if op.params:
        out["parameters"] = [_parameter(p, settings) for p in op.params]
    if op.body:
        out["requestBody"] = _body(op, settings)
    out["responses"] = _responses(op, spec.access, spec.rate_exempt)
    # Public: no credential needed (one may be sent; a bad one is 401). Else a Bearer token or the session cookie.
    out["security"] = [{}] if spec.access is None else [{"bearer": []}, {"cookie": []}]
    out.update(op.extra)
    return out


def _operation_id(op: Op) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", op.path).strip("_") or "root"
    return f"{op.method}_{words}"


def _undocumented(rule: Any, method: str, view: Any) -> dict[str, Any]:
    doc = (getattr(view, "__doc__", None) or "").strip()
    summary = doc.splitlines()[0] if doc else f"{method.upper()} {rule.rule}"
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in rule.arguments]
    out: dict[str, Any] = {
        "summary": summary,
        "operationId": f"{method}_{re.sub(r'[^A-Za-z0-9]+', '_', rule.rule).strip('_') or 'root'}",
        "x-undocumented": True,
        "responses": {"200": {"description": "OK"}, "default": {"$ref": "#/components/responses/Error"}},
    }
    if params:
        out["parameters"] = params
    return out


def _declared_op(endpoint: str, method: str, path: str) -> tuple[Op, Route] | None:
    declared = declaration(endpoint)
    if declared is None:
        return None
    op = next((op for op in declared.ops if (op.method, op.path) == (method, path)), None)
    return None if op is None else (op, declared)


def build(app: Quart, settings: Settings | None = None) -> dict[str, Any]:
    """The document for ``app``; ``settings`` fill in the bounds that are settings (a page size, a longest wait)."""
    # Everything the app serves (minus static files): as its route declares it, else from its docstring.
    described: list[tuple[int, int, Op, Route]] = []
    undescribed: list[tuple[str, str, dict[str, Any]]] = []
    for position, rule in enumerate(app.url_map.iter_rules()):
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        path = openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found = _declared_op(rule.endpoint, method.lower(), path)
            if found is not None:
                op, spec = found
                described.append((TAGS.index(op.tag), position, op, spec))
            else:
                view = app.view_functions.get(rule.endpoint)
                undescribed.append((path, method.lower(), _undocumented(rule, method.lower(), view)))
    paths: dict[str, dict[str, Any]] = {}
    # By section (as /docs shows them), then in the order the app registered them.
    for _, _, op, spec in sorted(described, key=lambda item: item[:2]):
        paths.setdefault(op.path, {})[op.method] = _operation(op, spec, settings)
    for path, method, operation in undescribed:
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "livedash",
            "version": VERSION,
            "description": "SSE-first live dashboard server. Errors are always `{error, detail}` JSON on /api. "
            "Every POST accepts JSON or a form.",
        },
        "paths": paths,
        "security": [{"bearer": []}, {"cookie": []}],
        "components": {
            "schemas": _schemas(),
            "responses": {
                "Error": {
                    "description": "An error: JSON `{error, detail}`; an htmx request (HX-Request: true) gets an HTML "
                    "fragment instead, and a browser asking for a page (Accept: text/html) an HTML page.",
                    "content": {
                        "application/json": {"schema": _ref("Error")},
                        "text/html": {"schema": {"type": "string"}},
                    },
                }
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "livedash_session"},
            },
        },
    }


def served_operations(app: Quart) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route the app serves, static files aside."""
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            out.add((method.lower(), openapi_path(rule.rule)))
    return out

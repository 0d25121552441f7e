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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from quart import Quart

from app.documents.alert_rules import RuleCreate, RuleUpdate
from app.documents.annotations import AnnotationCreate, AnnotationUpdate, Precondition
from app.ingest.readings import Reading
from app.presence import Heartbeat, Leave
from app.web.routing import TAGS, Op, declaration, openapi_path

VERSION = "0.1.0"
REF = "#/components/schemas/{model}"


class Event(BaseModel):
    """One entry of the event log: the same object on the stream (``data:``) and in ``/api/events``."""

    model_config = ConfigDict(title="Event")

    id: str = Field(description="monotonic, resumable id (`<ms>-<seq>`); send it back as Last-Event-ID or since")
    type: str = Field(description="metric, annotation, alert_rule, alert, presence (and reset in /api/events)")
    topic: str = Field(description="e.g. device/pump-1, room/dashboard")
    ts: int = Field(description="when the event was logged, Unix epoch ms")
    data: dict[str, Any] = Field(description="the payload; its shape depends on type")


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


MODELS: list[type[BaseModel]] = [
    Reading,
    AnnotationCreate,
    AnnotationUpdate,
    Precondition,
    RuleCreate,
    RuleUpdate,
    Heartbeat,
    Leave,
    Event,
    Error,
    Accepted,
    EventPage,
]


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema([(m, "validation") for m in MODELS], ref_template=REF)
    return dict(top.get("$defs", {}))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _body(kind: str) -> dict[str, Any]:
    if kind == "lines":
        return {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}
    schema: dict[str, Any] = (
        {"oneOf": [_ref("Reading"), {"type": "array", "items": _ref("Reading")}]} if kind == "readings" else _ref(kind)
    )
    form_schema = _ref("Reading") if kind == "readings" else schema
    return {
        "required": True,
        "content": {
            "application/json": {"schema": schema},
            "application/x-www-form-urlencoded": {"schema": form_schema},
        },
    }


def _operation(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "operationId": _operation_id(op)}
    if op.description:
        out["description"] = op.description
    if op.params:
        out["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "description": p.description,
                "schema": {"type": p.type},
            }
            for p in op.params
        ]
    if op.body:
        out["requestBody"] = _body(op.body)
    ok: dict[str, Any] = {"description": "OK"}
    if op.ok_type:
        if op.ok_type == "application/json":
            schema: dict[str, Any] = _ref(op.ok_schema) if op.ok_schema else {"type": "object"}
        else:
            schema = {"type": "string"}
        ok["content"] = {op.ok_type: {"schema": schema}}
    responses: dict[str, Any] = {str(op.ok): ok}
    for status in op.errors:
        responses[str(status)] = {"$ref": "#/components/responses/Error"}
    out["responses"] = responses
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


def _declared_op(endpoint: str, method: str, path: str) -> Op | None:
    declared = declaration(endpoint)
    if declared is None:
        return None
    return next((op for op in declared.ops if (op.method, op.path) == (method, path)), None)


def build(app: Quart) -> dict[str, Any]:
    # Everything the app serves (minus static files): as its route declares it, else from its docstring.
    described: list[tuple[int, int, Op]] = []
    undescribed: list[tuple[str, str, dict[str, Any]]] = []
    for position, rule in enumerate(app.url_map.iter_rules()):
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        path = openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = _declared_op(rule.endpoint, method.lower(), path)
            if op is not None:
                described.append((TAGS.index(op.tag), position, op))
            else:
                view = app.view_functions.get(rule.endpoint)
                undescribed.append((path, method.lower(), _undocumented(rule, method.lower(), view)))
    paths: dict[str, dict[str, Any]] = {}
    # By section (as /docs shows them), then in the order the app registered them.
    for _, _, op in sorted(described, key=lambda item: item[:2]):
        paths.setdefault(op.path, {})[op.method] = _operation(op)
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
        "security": [{"bearer": []}, {"cookie": []}, {}],
        "components": {
            "schemas": _schemas(),
            "responses": {
                "Error": {"description": "An error", "content": {"application/json": {"schema": _ref("Error")}}}
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

"""Route declarations: each route's rules, written once, next to its handler.

``@route(bp, "GET", "/api/events", access=READ, summary=..., tag="events", ...)``
registers the handler on its blueprint *and* records, under the handler's
endpoint name (``events.poll``), everything else the app needs to know about
it: who may call it (``access``: the roles allowed, or ``None`` for public),
whether it is exempt from the CSRF check or the write rate, whether the raw
ASGI ingest path may answer it, and its OpenAPI operation (summary, tag,
parameters, body, answers). Readers of the registry:

* ``app/auth/access.py`` decides access from it (fail closed: an endpoint
  with no declaration needs an admin), and ``app/auth/guard.py`` asks it
  about the exemptions;
* ``app/web/openapi.py`` builds ``/openapi.json`` from the operations;
* ``app/ingest/fast_path.py`` finds the route it serves here.

A handler served at a second method or path (``POST …/delete`` and
``DELETE …``) takes ``@also(bp, method, rule, ...)`` for the second one: one
more documented operation, the same endpoint and so the same access rule.
An endpoint registered outside a blueprint (Quart's ``static``) is declared
with ``declare``.

Free of the rest of the app (only ``quart``), so ``app/auth`` can read the
registry without an import cycle.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Unpack

from quart import Blueprint

if TYPE_CHECKING:
    from app.auth.tokens import Role

F = TypeVar("F", bound=Callable[..., Any])

# The document's sections, in the order /docs shows them.
TAGS = ("pages", "events", "readings", "annotations", "alerts", "presence", "auth", "operations")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class FromSettings:
    """A value in a schema that is a setting (the longest long poll, a page size): read when the document is built."""

    setting: str


@dataclass(frozen=True)
class Param:
    name: str
    where: str = "query"
    description: str = ""
    type: str = "string"
    required: bool = False
    # More JSON Schema: pattern, minimum, enum, items, ... (values may be FromSettings). The schema says
    # exactly what the handler accepts: what it refuses (400) is outside it.
    schema: Mapping[str, Any] = field(default_factory=dict)
    explode: bool = False  # an array: repeated (tag=a&tag=b) rather than a comma list (topics=a,b)


@dataclass(frozen=True)
class Op:
    """One documented operation: what it takes and what it answers."""

    method: str  # lower case, as OpenAPI spells it
    path: str  # OpenAPI's form: /api/annotations/{annotation_id}
    summary: str
    tag: str
    description: str = ""
    params: tuple[Param, ...] = ()
    body: str | None = None  # a component schema name, or "lines" (line protocol) / "readings"
    body_required: bool = True  # False: the body may be left out altogether (a delete's precondition)
    form_only: bool = False  # the body is a form, never JSON (POST /login)
    ok: int = 200
    ok_schema: str | Mapping[str, Any] | None = None  # a component's name, or a schema
    ok_type: str = "application/json"
    htmx: bool = False  # with HX-Request the answers are HTML fragments (text/html) instead
    ok_also: tuple[str, ...] = ()  # other types the success may come as, on request (text/csv)
    errors: tuple[int, ...] = ()
    answers: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)  # more answers, as OpenAPI writes them
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """Everything declared about one endpoint."""

    endpoint: str
    access: frozenset[Role] | None  # the roles allowed; None: public (no credential needed)
    ops: tuple[Op, ...] = ()  # none: not in the API description (static files)
    csrf_exempt: bool = False  # a cookie-authenticated write that needs no X-CSRF-Token
    rate_exempt: bool = False  # a write that does not count against the per-token write rate
    fast_path: bool = False  # JSON bodies may be answered by app/ingest/fast_path.py before Quart


_ROUTES: dict[str, Route] = {}
_PENDING: dict[str, list[Op]] = {}  # also() applied before (below) its route()


def declaration(endpoint: str | None) -> Route | None:
    return _ROUTES.get(endpoint) if endpoint is not None else None


def declarations() -> Mapping[str, Route]:
    """Every declared endpoint (a read-only view)."""
    return MappingProxyType(_ROUTES)


def openapi_path(rule: str) -> str:
    """Quart's ``/a/<int:x>`` → OpenAPI's ``/a/{x}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def declare(
    endpoint: str,
    *,
    access: frozenset[Role] | None,
    ops: tuple[Op, ...] = (),
    csrf_exempt: bool = False,
    rate_exempt: bool = False,
    fast_path: bool = False,
) -> Route:
    """Record an endpoint's rules (``route`` does this for blueprint routes)."""
    if endpoint in _ROUTES:
        raise ValueError(f"{endpoint} is declared twice (a second method or path takes also())")
    ops = ops + tuple(_PENDING.pop(endpoint, ()))
    for op in ops:
        _check_op(endpoint, op)
    spec = Route(endpoint, access, ops, csrf_exempt=csrf_exempt, rate_exempt=rate_exempt, fast_path=fast_path)
    _ROUTES[endpoint] = spec
    return spec


class OpFields(TypedDict, total=False):
    """What ``route`` and ``also`` take besides the method, rule, summary and tag: ``Op``'s optional fields
    (see there), declared once for both."""

    description: str
    params: tuple[Param, ...]
    body: str | None
    body_required: bool
    form_only: bool
    ok: int
    ok_schema: str | Mapping[str, Any] | None
    ok_type: str
    htmx: bool
    ok_also: tuple[str, ...]
    errors: tuple[int, ...]
    answers: Mapping[int, Mapping[str, Any]]
    extra: Mapping[str, Any]


def route(
    bp: Blueprint,
    method: str,
    rule: str,
    *,
    access: frozenset[Role] | None,
    summary: str,
    tag: str,
    csrf_exempt: bool = False,
    rate_exempt: bool = False,
    fast_path: bool = False,
    **fields: Unpack[OpFields],
) -> Callable[[F], F]:
    """Register ``method rule`` on ``bp`` and declare the endpoint: access, exemptions, its operation."""
    op = _op(method, rule, summary, tag, fields)

    def decorator(func: F) -> F:
        bp.add_url_rule(rule, view_func=func, methods=[method.upper()])
        declare(
            f"{bp.name}.{func.__name__}",
            access=access,
            ops=(op,),
            csrf_exempt=csrf_exempt,
            rate_exempt=rate_exempt,
            fast_path=fast_path,
        )
        return func

    return decorator


def also(
    bp: Blueprint, method: str, rule: str, *, summary: str, tag: str, **fields: Unpack[OpFields]
) -> Callable[[F], F]:
    """One more method or path for a handler that has a ``route``: same endpoint, same rules, its own operation."""
    op = _op(method, rule, summary, tag, fields)

    def decorator(func: F) -> F:
        bp.add_url_rule(rule, view_func=func, methods=[method.upper()])
        endpoint = f"{bp.name}.{func.__name__}"
        declared = _ROUTES.get(endpoint)
        if declared is None:
            _PENDING.setdefault(endpoint, []).append(op)  # route(), above it, picks it up
        else:
            _check_op(endpoint, op)
            _ROUTES[endpoint] = replace(declared, ops=(*declared.ops, op))
        return func

    return decorator


def _op(method: str, rule: str, summary: str, tag: str, fields: OpFields) -> Op:
    if method.upper() not in METHODS:
        raise ValueError(f"{method} {rule}: unknown method")
    if tag not in TAGS:
        raise ValueError(f"{method} {rule}: tag {tag!r} is not one of {TAGS}")
    op = Op(method.lower(), openapi_path(rule), summary, tag, **fields)  # Op's defaults for what is not given
    return replace(op, answers=dict(op.answers), extra=dict(op.extra))  # copies: the caller's mappings stay theirs


def _check_op(endpoint: str, op: Op) -> None:
    for other in _ROUTES.values():
        if any((o.method, o.path) == (op.method, op.path) for o in other.ops):
            raise ValueError(f"{op.method.upper()} {op.path} is declared by {other.endpoint} and by {endpoint}")


# Quart's own route for static/ (``Quart(static_folder=...)`` registers it): public, not in the document.
declare("static", access=None)


# --- parameters several routes share -------------------------------------------
# A device or metric name in a query (app/validation.py's SLUG_PATTERN; a test keeps them equal); empty: any.
SLUG = r"[A-Za-z0-9_.-]{1,64}"
OPTIONAL_SLUG = {"pattern": rf"^(?:{SLUG})?$"}
TOPICS = Param(
    "topics",
    description="comma list of topic patterns, `*` wildcards (device/pump-*); default all. "
    "At most 64 patterns of 200 characters, each with at most 8 `*`.",
    type="array",
    schema={
        "maxItems": 64,
        # What bodies.topic_filter refuses: CR, LF, NUL, more than 8 stars; a comma separates patterns.
        "items": {"type": "string", "maxLength": 200, "pattern": r"^[^,*\r\n\x00]*(?:\*[^,*\r\n\x00]*){0,8}$"},
    },
)
DEVICE = Param("device", description="a device slug", schema=OPTIONAL_SLUG)
METRIC = Param("metric", description="a metric slug", schema=OPTIONAL_SLUG)
# expected_version (app/documents/versioned.py): one version, as its ETag, weak or bare; "*" or empty is none.
IF_MATCH = Param(
    "If-Match",
    "header",
    'the version you edited, as its ETag ("3"; W/"3" and 3 too; * or empty: none); or send version in the body',
    schema={"pattern": r'^[ \t]*(?:(?:W/)?"?[0-9]{1,18}"?|\*)?[ \t]*$'},
)
# Document ids are made by the server (app/documents/versioned.py's ID_PATTERN); any other id is a 404.
DOC_ID = {"pattern": r"^[A-Za-z0-9_-]{1,64}$"}
ANN_ID = Param("annotation_id", "path", required=True, schema=DOC_ID)
RULE_ID = Param("rule_id", "path", required=True, schema=DOC_ID)
# What a write with a body may answer besides its success (401, 403, 429 and 503 come from the access rule).
BODY_ERRORS = (400, 413, 415, 422)
# ... and a write to a versioned document (404 unknown, 409 stale version, 410 deleted).
WRITE_ERRORS = (400, 404, 409, 410, 413, 415, 422)


def fast_path_op() -> tuple[str, Op]:
    """The one operation ``app/ingest/fast_path.py`` answers (``fast_path=True``): its endpoint and operation."""
    found = [(spec.endpoint, op) for spec in _ROUTES.values() if spec.fast_path for op in spec.ops]
    if len(found) != 1 or "{" in found[0][1].path:
        raise RuntimeError(f"the fast path serves exactly one operation on a fixed path; declared: {found}")
    return found[0]

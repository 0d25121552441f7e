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
from typing import TYPE_CHECKING, Any, TypeVar

from quart import Blueprint

if TYPE_CHECKING:
    from app.auth.tokens import Role

F = TypeVar("F", bound=Callable[..., Any])

# The document's sections, in the order /docs shows them.
TAGS = ("pages", "events", "readings", "annotations", "alerts", "presence", "auth", "operations")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


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

    method: str  # lower case, as OpenAPI spells it
    path: str  # OpenAPI's form: /api/annotations/{annotation_id}
    summary: str
    tag: str
    description: str = ""
    params: tuple[Param, ...] = ()
    body: str | None = None  # a component schema name, or "lines" (line protocol) / "readings"
    ok: int = 200
    ok_schema: str | None = None
    ok_type: str = "application/json"
    errors: tuple[int, ...] = ()
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


def route(
    bp: Blueprint,
    method: str,
    rule: str,
    *,
    access: frozenset[Role] | None,
    summary: str,
    tag: str,
    description: str = "",
    params: tuple[Param, ...] = (),
    body: str | None = None,
    ok: int = 200,
    ok_schema: str | None = None,
    ok_type: str = "application/json",
    errors: tuple[int, ...] = (),
    extra: Mapping[str, Any] | None = None,
    csrf_exempt: bool = False,
    rate_exempt: bool = False,
    fast_path: bool = False,
) -> Callable[[F], F]:
    """Register ``method rule`` on ``bp`` and declare the endpoint: access, exemptions, its operation."""
    op = _op(method, rule, summary, tag, description, params, body, ok, ok_schema, ok_type, errors, extra)

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
    bp: Blueprint,
    method: str,
    rule: str,
    *,
    summary: str,
    tag: str,
    description: str = "",
    params: tuple[Param, ...] = (),
    body: str | None = None,
    ok: int = 200,
    ok_schema: str | None = None,
    ok_type: str = "application/json",
    errors: tuple[int, ...] = (),
    extra: Mapping[str, Any] | None = None,
) -> Callable[[F], F]:
    """One more method or path for a handler that has a ``route``: same endpoint, same rules, its own operation."""
    op = _op(method, rule, summary, tag, description, params, body, ok, ok_schema, ok_type, errors, extra)

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


def _op(
    method: str,
    rule: str,
    summary: str,
    tag: str,
    description: str,
    params: tuple[Param, ...],
    body: str | None,
    ok: int,
    ok_schema: str | None,
    ok_type: str,
    errors: tuple[int, ...],
    extra: Mapping[str, Any] | None,
) -> Op:
    if method.upper() not in METHODS:
        raise ValueError(f"{method} {rule}: unknown method")
    if tag not in TAGS:
        raise ValueError(f"{method} {rule}: tag {tag!r} is not one of {TAGS}")
    return Op(
        method.lower(),
        openapi_path(rule),
        summary,
        tag,
        description=description,
        params=params,
        body=body,
        ok=ok,
        ok_schema=ok_schema,
        ok_type=ok_type,
        errors=errors,
        extra=dict(extra or {}),
    )


def _check_op(endpoint: str, op: Op) -> None:
    for other in _ROUTES.values():
        if any((o.method, o.path) == (op.method, op.path) for o in other.ops):
            raise ValueError(f"{op.method.upper()} {op.path} is declared by {other.endpoint} and by {endpoint}")


# Quart's own route for static/ (``Quart(static_folder=...)`` registers it): public, not in the document.
declare("static", access=None)


# --- parameters several routes share -------------------------------------------
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
# What a write with a body may answer besides its success.
BODY_ERRORS = (400, 413, 415, 422, 503)
# ... and a write to a versioned document (409 stale version, 410 deleted).
WRITE_ERRORS = (400, 409, 410, 413, 415, 422, 503)


def fast_path_op() -> tuple[str, Op]:
    """The one operation ``app/ingest/fast_path.py`` answers (``fast_path=True``): its endpoint and operation."""
    found = [(spec.endpoint, op) for spec in _ROUTES.values() if spec.fast_path for op in spec.ops]
    if len(found) != 1 or "{" in found[0][1].path:
        raise RuntimeError(f"the fast path serves exactly one operation on a fixed path; declared: {found}")
    return found[0]

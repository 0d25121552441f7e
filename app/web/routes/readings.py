"""Readings: ``POST /api/metrics`` and the ``latest`` / ``series`` snapshots."""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, Response, request

from app.auth.access import INGEST, READ, Identity
from app.auth.guard import current_identity, require_devices
from app.errors import BadRequest, Unprocessable
from app.ingest.pipeline import ingest as ingest_readings
from app.ingest.readings import parse_readings
from app.ops import telemetry
from app.series import TagFilter
from app.services import Services, services
from app.storage.keyspace import series_id
from app.validation import SLUG_PATTERN
from app.web.bodies import int_arg, json_or_form, slug_arg
from app.web.responses import json_response
from app.web.routing import BODY_ERRORS, DEVICE, METRIC, Param, route

bp = Blueprint("metrics", __name__)

TAG = Param("tag", description="key:value, repeatable; values of one key are alternatives, keys all apply")

MAX_SERIES_PER_QUERY = 200


def _form_reading(form: dict[str, str | None]) -> dict[str, object]:
    """A form posts strings; tags come as ``k=v,k2=v2``; empty optional fields are absent."""
    reading: dict[str, object] = {k: v for k, v in form.items() if v not in (None, "")}
    tags = reading.get("tags")
    if isinstance(tags, str):
        parsed: dict[str, str] = {}
        for pair in tags.split(","):
            key, sep, value = pair.partition("=")
            if not sep:
                raise BadRequest("form field 'tags' must look like key=value,key2=value2", code="invalid")
            parsed[key.strip()] = value.strip()
        reading["tags"] = parsed
    return reading


@route(
    bp,
    "POST",
    "/api/metrics",
    access=INGEST,
    summary="Ingest one reading or a batch",
    tag="readings",
    description="JSON (one object or a list) or a form. A batch is validated whole: all stored, or a 422 naming "
    "each bad field (`3.value`).",
    body="readings",
    ok=202,
    ok_schema="Accepted",
    errors=BODY_ERRORS,
    fast_path=True,  # JSON from a Bearer client: answered by app/ingest/fast_path.py, through accept_readings too
)
async def ingest() -> Response:
    # JSON bodies from Bearer clients (and everyone, with auth off) are
    # answered before Quart by ``fast_ingest``; forms, cookies and any
    # request it does not settle come here. Both end in ``accept_readings``.
    body, is_form = await json_or_form()
    if is_form:
        body = _form_reading(body)
    return json_response(await accept_readings(services(), body, current_identity()), status=202)


async def accept_readings(svc: Services, body: Any, identity: Identity) -> dict[str, Any]:
    """A parsed body becomes stored readings (all of them, or none and a 4xx); the 202's body."""
    try:
        readings = parse_readings(body, max_batch=svc.settings.max_batch)
    except Unprocessable:
        telemetry.INGEST_REJECTED.labels("http").inc()
        raise
    require_devices((r.device for r in readings), identity)
    ids = await ingest_readings(svc, readings)
    return {"accepted": len(ids), "cursor": ids[-1]}


@route(
    bp,
    "GET",
    "/api/metrics/latest",
    access=READ,
    summary="Latest value of every series",
    tag="readings",
    params=(DEVICE, METRIC, TAG),
    errors=(400,),
)
async def latest() -> Response:
    items, cursor = await services().series.latest(slug_arg("device"), slug_arg("metric"), tag_filter())
    items = [r for r in items if current_identity().sees_device(r["device"])]
    return json_response({"series": items, "cursor": cursor})


@route(
    bp,
    "GET",
    "/api/metrics/series",
    access=READ,
    summary="Recent history of series",
    tag="readings",
    params=(DEVICE, METRIC, TAG, Param("limit", type="integer", description="points per series")),
    errors=(400,),
)
async def series() -> Response:
    svc = services()
    device, metric, tags = slug_arg("device"), slug_arg("metric"), tag_filter()
    limit = int_arg("limit", svc.settings.history_size, 1, svc.settings.history_size)
    found, _ = await svc.series.latest(device, metric, tags)
    found = [r for r in found if current_identity().sees_device(r["device"])][:MAX_SERIES_PER_QUERY]
    if device and metric and not found and not tags and current_identity().sees_device(device):
        found = [{"device": device, "metric": metric, "tags": {}}]
    ids = [series_id(r["device"], r["metric"], r.get("tags")) for r in found]
    points, cursor = await svc.series.history(ids, limit)
    out = []
    for sid, r in zip(ids, found, strict=True):
        entry = {"device": r["device"], "metric": r["metric"], "tags": r.get("tags") or {}}
        if r.get("unit"):
            entry["unit"] = r["unit"]
        out.append({**entry, "points": points[sid]})
    return json_response({"series": out, "cursor": cursor})


def tag_filter() -> TagFilter | None:
    """``tag=key:value``, repeatable: several values of one key match any, different keys all."""
    wanted: TagFilter = {}
    for raw in request.args.getlist("tag"):
        key, sep, value = raw.partition(":")
        if not sep or not re.match(SLUG_PATTERN, key):
            raise BadRequest("query parameter 'tag' must look like key:value (the key a slug)", code="bad_query")
        wanted.setdefault(key, set()).add(value)
    return wanted or None

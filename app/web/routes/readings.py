"""Readings: ``POST /api/metrics`` and the ``latest`` / ``series`` snapshots."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from app.auth.access import INGEST, READ, Identity
from app.auth.guard import current_identity, require_devices
from app.errors import BadRequest, Unprocessable
from app.ingest.pipeline import ingest as ingest_readings
from app.ingest.readings import parse_readings
from app.ops import telemetry
from app.services import Services, services
from app.storage.keyspace import series_id
from app.web.bodies import int_arg, json_or_form, slug_arg
from app.web.responses import json_response
from app.web.routing import BODY_ERRORS, DEVICE, METRIC, Param, route

bp = Blueprint("metrics", __name__)

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
    params=(DEVICE, METRIC),
    errors=(400,),
)
async def latest() -> Response:
    items, cursor = await services().series.latest(slug_arg("device"), slug_arg("metric"))
    items = [r for r in items if current_identity().sees_device(r["device"])]
    return json_response({"series": items, "cursor": cursor})


@route(
    bp,
    "GET",
    "/api/metrics/series",
    access=READ,
    summary="Recent history of series",
    tag="readings",
    params=(DEVICE, METRIC, Param("limit", type="integer", description="points per series")),
    errors=(400,),
)
async def series() -> Response:
    svc = services()
    device, metric = slug_arg("device"), slug_arg("metric")
    limit = int_arg("limit", svc.settings.history_size, 1, svc.settings.history_size)
    ids = [
        sid
        for sid in await svc.series.series_ids()
        if (device is None or sid.split("/")[0] == device)
        and (metric is None or sid.split("/")[1] == metric)
        and current_identity().sees_device(sid.split("/")[0])
    ][:MAX_SERIES_PER_QUERY]
    if device and metric and not ids and current_identity().sees_device(device):
        ids = [series_id(device, metric)]
    points, cursor = await svc.series.history(ids, limit)
    out = []
    for sid in ids:
        dev, _, met = sid.partition("/")
        out.append({"device": dev, "metric": met, "points": points[sid]})
    return json_response({"series": out, "cursor": cursor})

"""Readings: ``POST /api/metrics`` and the ``latest`` / ``series`` snapshots."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
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
from app.settings import parse_duration_ms
from app.storage.keyspace import series_id
from app.storage.rollups import COLUMNS, public_row
from app.validation import MIN_TS_MS, RFC3339_PATTERN, SLUG_PATTERN, now_ms, parse_ts
from app.web.bodies import int_arg, json_or_form, slug_arg
from app.web.responses import json_response
from app.web.routing import BODY_ERRORS, DEVICE, METRIC, FromSettings, Param, route

bp = Blueprint("metrics", __name__)

TAG = Param(
    "tag",
    description="key:value, repeatable; values of one key are alternatives, keys all apply",
    type="array",
    explode=True,
    schema={"items": {"type": "string", "pattern": rf"^{SLUG_PATTERN.strip('^$')}:"}},
)
# A time in a query (time_arg): RFC 3339, epoch ms (2000 to 2200), now, or relative to now; empty: none.
_EPOCH_MS = r"(?:9[5-9][0-9]{10}|[1-6][0-9]{12}|7[01][0-9]{11}|72[0-4][0-9]{10})"
_RFC3339 = RFC3339_PATTERN.strip("^$")
TIME = {"pattern": rf"^(?:now|(?:now)?-[1-9][0-9]{{0,5}}(?:ms|s|m|h|d|w)|{_EPOCH_MS}|{_RFC3339})?$"}

MAX_SERIES_PER_QUERY = 200
DEFAULT_POINTS = 1_000
MAX_POINTS = 20_000


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
    description="JSON (one object or a list, at most LIVEDASH_MAX_BATCH) or a form. A batch is validated whole: "
    "all stored, or a 422 naming each bad field (`3.value`), also past the series limits "
    "(LIVEDASH_MAX_SERIES_PER_DEVICE, LIVEDASH_MAX_SERIES). A device token posts only for its devices (403).",
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
        readings = parse_readings(body, max_batch=svc.settings.max_batch, max_future_s=svc.settings.max_future)
    except Unprocessable:
        telemetry.INGEST_REJECTED.labels("http").inc()
        raise
    require_devices((r.device for r in readings), identity)
    ids = await ingest_readings(svc, readings)
    return {"accepted": len(ids), "too_old": ids.too_old, "cursor": ids[-1]}


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
    params=(
        DEVICE,
        METRIC,
        TAG,
        Param(
            "limit",
            type="integer",
            description="without from: the newest points per series (at most LIVEDASH_HISTORY_SIZE)",
            schema={"minimum": 1, "maximum": FromSettings("history_size")},
        ),
        Param(
            "from", description="RFC 3339, epoch ms, or relative (-6h, now-15m); absent: the newest points", schema=TIME
        ),
        Param("to", description="RFC 3339, epoch ms, relative, or now (the default)", schema=TIME),
        Param(
            "points",
            type="integer",
            description=f"most points or rows per series (default {DEFAULT_POINTS})",
            schema={"minimum": 1, "maximum": MAX_POINTS},
        ),
        Param(
            "step",
            description="row width (1m, 1h, or ms): rows merged from the rollup tiers",
            schema={"pattern": r"^(?:[1-9][0-9]{0,9}|[1-9][0-9]{0,5}(?:ms|s|m|h|d|w))?$"},
        ),
        Param(
            "format", description="csv: one row per point (or Accept: text/csv)", schema={"enum": ["json", "csv", ""]}
        ),
    ),
    description="A range (`from`) is refused with 400 when `from` is after `to`, when `step` would make more than "
    f"{MAX_POINTS} rows, or when it matches more than {MAX_SERIES_PER_QUERY} series (narrow it with device, metric "
    "or tag).",
    ok_also=("text/csv",),
    errors=(400,),
)
async def series() -> Response:
    svc = services()
    device, metric, tags = slug_arg("device"), slug_arg("metric"), tag_filter()
    now = now_ms()
    start, end = time_arg("from", now), time_arg("to", now)
    found, _ = await svc.series.latest(device, metric, tags)
    found = [r for r in found if current_identity().sees_device(r["device"])]
    if device and metric and not found and not tags and current_identity().sees_device(device):
        found = [{"device": device, "metric": metric, "tags": {}}]
    ids = [series_id(r["device"], r["metric"], r.get("tags")) for r in found]
    out: list[dict[str, Any]] = []
    if start is None:
        # Today's answer: the newest points of each series.
        found, ids = found[:MAX_SERIES_PER_QUERY], ids[:MAX_SERIES_PER_QUERY]
        limit = int_arg("limit", svc.settings.history_size, 1, svc.settings.history_size)
        # What only a range uses is still checked: a malformed value is a 400, never silently ignored.
        int_arg("points", DEFAULT_POINTS, 1, MAX_POINTS)
        _step_arg(now, now)
        points, cursor = await svc.series.history(ids, limit)
        for sid, r in zip(ids, found, strict=True):
            out.append({**_describe(r), "points": points[sid]})
        body: dict[str, Any] = {"series": out, "cursor": cursor}
    else:
        end = now if end is None else end
        if start > end:
            raise BadRequest("query parameter 'from' must not be after 'to'", code="bad_query")
        if len(ids) > MAX_SERIES_PER_QUERY:
            raise BadRequest(
                f"query parameter 'device': the query matches {len(ids)} series, at most {MAX_SERIES_PER_QUERY} "
                "per range (narrow it with device, metric or tag)",
                code="bad_query",
            )
        points_wanted = int_arg("points", DEFAULT_POINTS, 1, MAX_POINTS)
        step = _step_arg(start, end)
        int_arg("limit", svc.settings.history_size, 1, svc.settings.history_size)  # checked, unused in a range
        try:
            got = await svc.series.range(ids, start, end, points_wanted, step, now)
        except ValueError as exc:
            raise BadRequest(f"query parameter 'step' {exc}", code="bad_query") from None
        for sid, r in zip(ids, found, strict=True):
            entry = {**_describe(r), "step_ms": got.step}
            if got.step:
                entry["columns"] = list(COLUMNS)
                entry["points"] = [public_row(row) for row in got.rows[sid]]
            else:
                entry["points"] = got.raw[sid]
            out.append(entry)
        body = {"series": out, "from": start, "to": end, "step_ms": got.step, "cursor": got.cursor}
    if _wants_csv():
        return _csv(out)
    return json_response(body)


_RELATIVE = re.compile(r"^(?:now)?-(\d+(?:ms|s|m|h|d|w))$")


def time_arg(name: str, now: int) -> int | None:
    """A time in a query: RFC 3339, epoch ms, ``now``, or relative to now (``-6h``, ``now-15m``)."""
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    if raw == "now":
        return now
    relative = _RELATIVE.match(raw)
    if relative:
        # No reading is older than MIN_TS_MS: a longer look back (-999999w) means the same, and must not make
        # a range scan walk millennia of empty chunks.
        return max(MIN_TS_MS, now - parse_duration_ms(relative.group(1)))
    try:
        return parse_ts(raw)
    except ValueError as exc:
        raise BadRequest(f"query parameter {name!r}: {exc}, or relative like -6h or now", code="bad_query") from None


def _step_arg(start: int, end: int) -> int | None:
    raw = (request.args.get("step") or "").strip()
    if not raw:
        return None
    try:
        step = parse_duration_ms(raw)
    except ValueError as exc:
        raise BadRequest(f"query parameter 'step': {exc}", code="bad_query") from None
    if step <= 0:
        raise BadRequest("query parameter 'step' must be positive", code="bad_query")
    if (end - start) // step + 1 > MAX_POINTS:
        raise BadRequest(
            f"query parameter 'step' is too fine: more than {MAX_POINTS} rows per series", code="bad_query"
        )
    return step


def _describe(r: dict[str, Any]) -> dict[str, Any]:
    return {"device": r["device"], "metric": r["metric"], "tags": r.get("tags") or {}, "unit": r.get("unit")}


def _wants_csv() -> bool:
    fmt = request.args.get("format")
    if fmt not in (None, "", "json", "csv"):
        raise BadRequest("query parameter 'format' must be json or csv", code="bad_query")
    if fmt:
        return fmt == "csv"
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


def fmt_iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _csv(series: list[dict[str, Any]]) -> Response:
    """One row per point: the series (device, metric, tags as k=v;k2=v2, unit), its time, then its columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    aggregated = any("columns" in s for s in series)
    values = ["min", "max", "mean", "count", "last"] if aggregated else ["value"]
    writer.writerow(["device", "metric", "tags", "unit", "ts", "time", *values])
    for s in series:
        tags = ";".join(f"{k}={v}" for k, v in sorted(s["tags"].items()))
        for point in s["points"]:
            writer.writerow([s["device"], s["metric"], tags, s["unit"] or "", point[0], fmt_iso(point[0]), *point[1:]])
    return Response(buffer.getvalue(), mimetype="text/csv", headers={"Cache-Control": "no-store"})


def tag_filter() -> TagFilter | None:
    """``tag=key:value``, repeatable: several values of one key match any, different keys all."""
    wanted: TagFilter = {}
    for raw in request.args.getlist("tag"):
        key, sep, value = raw.partition(":")
        if not sep or not re.match(SLUG_PATTERN, key):
            raise BadRequest("query parameter 'tag' must look like key:value (the key a slug)", code="bad_query")
        wanted.setdefault(key, set()).add(value)
    return wanted or None

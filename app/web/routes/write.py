"""``POST /api/write``: InfluxDB line protocol in, readings out (Telegraf's HTTP output).

The same rules as ``POST /api/metrics``: the batch is validated whole and a
4xx names each bad line; nothing is stored unless everything is valid. A
success answers ``204 No Content`` like InfluxDB (Telegraf's InfluxDB output
counts only that as written), with the figures in ``X-Livedash-*`` headers.
The mapping is in ``app/ingest/lineprotocol.py`` and docs/ingest.md.
"""

from __future__ import annotations

import zlib

from quart import Blueprint, Response, request

from app.auth.access import INGEST
from app.auth.guard import require_devices
from app.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from app.ingest import lineprotocol
from app.ingest.pipeline import ingest
from app.ops import telemetry
from app.services import services
from app.web.routing import BODY_ERRORS, Param, route

bp = Blueprint("write", __name__)


def _inflate(raw: bytes, limit: int) -> bytes:
    """A gzip body (Telegraf compresses by default), bounded: a zip bomb gets 413."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"bad gzip body: {exc}", code="bad_encoding") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"body larger than {limit} bytes once decompressed")
    return out


@route(
    bp,
    "POST",
    "/api/write",
    access=INGEST,
    summary="Ingest InfluxDB line protocol (Telegraf)",
    tag="readings",
    description="`measurement[,tag=v] field=v[,field=v] [ts]`. The device tag (default `device`) names the device; "
    "a field named `value` keeps the measurement as metric, another field `f` gives `measurement.f`; other tags "
    "become tags; string and boolean fields are skipped. Validated whole; 400/422 name the line. Answers 204 with "
    "X-Livedash-Accepted / X-Livedash-Skipped-Fields / X-Livedash-Cursor headers.",
    params=(
        Param("precision", description="timestamp unit: ns (default), us, ms, s"),
        Param("db", description="ignored (Telegraf sends it)"),
    ),
    body="lines",
    ok=204,
    ok_type="",
    errors=BODY_ERRORS,
)
async def write() -> Response:
    """Line protocol: each numeric field of each line becomes a reading."""
    svc = services()
    settings = svc.settings
    if request.mimetype == "application/json":
        raise UnsupportedMediaType("this is the line-protocol endpoint; POST JSON readings to /api/metrics")
    precision = request.args.get("precision") or "ns"
    if precision not in lineprotocol.PRECISIONS:
        raise BadRequest(f"unknown precision {precision!r}: use ns, us, ms or s", code="bad_query")
    data = await request.get_data(as_text=False)
    raw = data if isinstance(data, bytes) else data.encode()
    encoding = (request.headers.get("Content-Encoding") or "identity").lower()
    if encoding == "gzip":
        raw = _inflate(raw, settings.max_body_bytes)
    elif encoding != "identity":
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r}: send identity or gzip")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not UTF-8 (byte {exc.start})", code="bad_line_protocol") from None
    if not text.strip():
        raise BadRequest("empty body: send line protocol, one point per line", code="bad_line_protocol")
    try:
        points = lineprotocol.parse(text)
    except lineprotocol.LineError as exc:
        telemetry.INGEST_REJECTED.labels("line").inc()
        raise BadRequest([{"line": exc.line, "error": exc.message}], code="bad_line_protocol") from None
    batch = lineprotocol.to_readings(points, device_tag=settings.line_device_tag, precision=precision)
    if batch.errors:
        telemetry.INGEST_REJECTED.labels("line").inc()
        raise Unprocessable(batch.errors)
    if not batch.readings:
        telemetry.INGEST_REJECTED.labels("line").inc()
        raise Unprocessable("no numeric fields: nothing to store (string and boolean fields are skipped)")
    if len(batch.readings) > settings.max_batch:
        telemetry.INGEST_REJECTED.labels("line").inc()
        raise Unprocessable(
            f"batch too large: {len(batch.readings)} readings, at most {settings.max_batch}", code="batch_too_large"
        )
    require_devices(r.device for r in batch.readings)  # a device token writes only for its own devices
    ids = await ingest(svc, batch.readings, source="line")
    headers = {
        "X-Livedash-Accepted": str(len(ids)),
        "X-Livedash-Skipped-Fields": str(batch.skipped_fields),
        "X-Livedash-Cursor": ids[-1],
    }
    response = Response(b"", status=204, headers=headers)
    del response.headers["Content-Type"]  # no body, so no type (Quart's default would say HTML)
    return response

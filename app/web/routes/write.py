"""InfluxDB-compatible ingest: ``POST /api/write`` (1.x), ``POST /api/v2/write`` (2.x), ``POST /api/query``.

Line protocol in, readings out (Telegraf's ``outputs.influxdb``,
``outputs.influxdb_v2`` and ``outputs.http``). Unlike ``POST /api/metrics``
(JSON, validated whole), line protocol follows InfluxDB's partial writes: the
good lines are stored, the bad ones are named in a 400 body. A collector
answered with a 4xx drops its whole batch and never retries it, so refusing a
thousand good lines for one bad one would lose them; a JSON client wrote its
batch itself and can fix it. Each line is taken whole or not at all, and the
good lines of a request are stored in one atomic step. A success answers
``204 No Content`` like InfluxDB (Telegraf counts only that as written), with
the figures in ``X-Livedash-*`` headers. The mapping is in
``app/ingest/lineprotocol.py`` and docs/ingest.md.

Credentials: ``Authorization: Bearer``/``Token <token>``, or HTTP Basic with the
token as the password (``app/auth/guard.py``, these endpoints only).
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

PRECISION_V2 = {"ns": "ns", "us": "us", "ms": "ms", "s": "s"}


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


async def _text() -> str:
    if request.mimetype == "application/json":
        raise UnsupportedMediaType("this is the line-protocol endpoint; POST JSON readings to /api/metrics")
    settings = services().settings
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
    return text


async def _store_lines(text: str, precision: str) -> Response:
    """Parse, store the good lines atomically, name the bad ones: the answer of both write endpoints."""
    svc = services()
    settings = svc.settings
    points, syntax = lineprotocol.parse_all(text)
    batch = lineprotocol.to_readings(
        points, device_tag=settings.line_device_tag, precision=precision, max_future_s=settings.max_future
    )
    errors = sorted(
        [{"line": e.line, "error": e.message} for e in syntax] + batch.errors, key=lambda item: item["line"]
    )[: lineprotocol.MAX_ERRORS]
    rejected = len(syntax) + len(batch.rejected_lines)
    if len(batch.readings) > settings.line_max_readings:
        telemetry.INGEST_REJECTED.labels("line").inc()
        # 413, nothing stored: the limit is set so that Telegraf's default batches fit (docs/ingest.md).
        raise PayloadTooLarge(
            f"batch too large: {len(batch.readings)} readings, at most {settings.line_max_readings} "
            "(LIVEDASH_LINE_MAX_READINGS); send fewer lines per request",
            code="batch_too_large",
        )
    if not batch.readings and not rejected:
        telemetry.INGEST_REJECTED.labels("line").inc()
        raise Unprocessable("no numeric fields: nothing to store (string and boolean fields are skipped)")
    accepted: list[str] = []
    if batch.readings:
        require_devices(r.device for r in batch.readings)  # a device token writes only for its own devices
        accepted = list(await ingest(svc, batch.readings, source="line"))
    headers = {
        "X-Livedash-Accepted": str(len(accepted)),
        "X-Livedash-Skipped-Fields": str(batch.skipped_fields),
        "X-Livedash-Rejected-Lines": str(rejected),
    }
    if accepted:
        headers["X-Livedash-Cursor"] = accepted[-1]
    if rejected:
        telemetry.INGEST_REJECTED.labels("line").inc(rejected)
        # As InfluxDB: 400, the good lines kept ("partial write"), each bad one named (up to MAX_ERRORS).
        raise BadRequest(
            errors,
            code="partial_write" if accepted else "bad_line_protocol",
            headers=headers,
            body={"accepted": len(accepted), "rejected_lines": rejected},
        )
    response = Response(b"", status=204, headers=headers)
    del response.headers["Content-Type"]  # no body, so no type (Quart's default would say HTML)
    return response


WRITE_DESCRIPTION = (
    "`measurement[,tag=v] field=v[,field=v] [ts]`. The device tag (default `device`) names the device; "
    "a field named `value` keeps the measurement as metric, another field `f` gives `measurement.f`; other tags "
    "become tags; string and boolean fields are skipped. Partial writes, as InfluxDB: good lines are stored (in "
    "one atomic step), bad ones are named in a 400 (`partial_write` when some were stored). Answers 204 with "
    "X-Livedash-Accepted / X-Livedash-Skipped-Fields / X-Livedash-Cursor headers. Credentials: Bearer, Token, "
    "or Basic with the token as the password."
)


@route(
    bp,
    "POST",
    "/api/write",
    access=INGEST,
    summary="Ingest InfluxDB line protocol (Telegraf, InfluxDB 1.x clients)",
    tag="readings",
    description=WRITE_DESCRIPTION,
    params=(
        Param(
            "precision",
            description="timestamp unit: ns (default, also when empty), us, ms, s",
            schema={"enum": ["ns", "us", "ms", "s", ""]},
        ),
        Param("db", description="ignored (Telegraf sends it)"),
        Param("rp", description="ignored"),
    ),
    body="lines",
    ok=204,
    ok_type="",
    errors=BODY_ERRORS,
)
async def write() -> Response:
    """Line protocol: each numeric field of each line becomes a reading."""
    precision = request.args.get("precision") or "ns"
    if precision not in lineprotocol.PRECISIONS:
        raise BadRequest(f"unknown precision {precision!r}: use ns, us, ms or s", code="bad_query")
    return await _store_lines(await _text(), precision)


@route(
    bp,
    "POST",
    "/api/v2/write",
    access=INGEST,
    summary="Ingest InfluxDB line protocol (InfluxDB 2.x clients, Telegraf's outputs.influxdb_v2)",
    tag="readings",
    description=WRITE_DESCRIPTION + " `org` and `bucket` are accepted and ignored: the token decides what it may "
    "write, the device tag where it goes.",
    params=(
        Param(
            "precision",
            description="timestamp unit: ns (default, also when empty), us, ms, s",
            schema={"enum": ["ns", "us", "ms", "s", ""]},
        ),
        Param("org", description="ignored (required by InfluxDB 2.x clients)"),
        Param("orgID", description="ignored"),
        Param("bucket", description="ignored (required by InfluxDB 2.x clients)"),
    ),
    body="lines",
    ok=204,
    ok_type="",
    errors=BODY_ERRORS,
)
async def write_v2() -> Response:
    precision = request.args.get("precision") or "ns"
    if precision not in PRECISION_V2:
        raise BadRequest(f"unknown precision {precision!r}: use ns, us, ms or s", code="bad_query")
    return await _store_lines(await _text(), PRECISION_V2[precision])


@route(
    bp,
    "POST",
    "/api/query",
    access=INGEST,
    summary="InfluxDB 1.x query endpoint: CREATE DATABASE only, answered as done",
    tag="readings",
    description="Telegraf's `outputs.influxdb` sends `CREATE DATABASE` here at start (unless "
    "`skip_database_creation = true`). livedash has no databases: the statement is answered as InfluxDB answers "
    "a database that exists, and nothing else is queried here (400).",
    params=(
        Param(
            "q",
            required=True,
            description="the statement (a query parameter, or a form field instead)",
            schema={"pattern": "^[ \\t]*[Cc][Rr][Ee][Aa][Tt][Ee] [Dd][Aa][Tt][Aa][Bb][Aa][Ss][Ee]"},
        ),
    ),
    errors=(400,),
)
async def query() -> Response:
    form = await request.form
    statement = (form.get("q") or request.args.get("q") or "").strip()
    if not statement.upper().startswith("CREATE DATABASE"):
        raise BadRequest(
            "only CREATE DATABASE is answered here (livedash is not a query engine; read /api/metrics/series)",
            code="bad_query",
        )
    return Response(b'{"results":[{"statement_id":0}]}', status=200, content_type="application/json")

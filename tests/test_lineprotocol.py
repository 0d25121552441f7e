"""InfluxDB line protocol: the parser (escapes, types, precision) and POST /api/write (Telegraf's output)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from quart import Quart

from app import create_app
from app.ingest import lineprotocol
from app.settings import Settings

from .types import QuartClient

TS_S = 1_790_000_000
TS_MS = TS_S * 1000

# What Telegraf's cpu, mem and http_response inputs send (host tag, ns timestamps, mixed field types).
TELEGRAF = (
    f"cpu,cpu=cpu-total,host=web-01 usage_idle=97.5,usage_user=1.25,usage_system=1.25 {TS_S}000000000\n"
    f"mem,host=web-01 used=123456789i,available_percent=62.5 {TS_S}000000000\n"
    f'http_response,host=web-01,method=GET,server=http://x response_time=0.12,result="success",up=true '
    f"{TS_S}000000000\n"
)


def parse_one(line: str) -> lineprotocol.Point:
    points = lineprotocol.parse(line)
    assert len(points) == 1
    return points[0]


def test_escapes_in_measurement_tags_and_fields() -> None:
    point = parse_one(r'disk\ io,dev\,ice=pump\ 1,path=a\=b read\ bytes=1i,note="say \"hi\", ok",x=2 1')
    assert point.measurement == "disk io"
    assert point.tags == {"dev,ice": "pump 1", "path": "a=b"}
    assert point.fields == {"read bytes": 1.0, "note": 'say "hi", ok', "x": 2.0}
    assert point.timestamp == 1


def test_field_types() -> None:
    point = parse_one('m f=1.5,i=-3i,u=7u,e=1e3,t=true,F=F,s="str with spaces=and,commas"')
    assert point.fields == {
        "f": 1.5,
        "i": -3.0,
        "u": 7.0,
        "e": 1000.0,
        "t": True,
        "F": False,
        "s": "str with spaces=and,commas",
    }


def test_comments_blank_lines_and_crlf() -> None:
    points = lineprotocol.parse("# a comment\n\nm,device=d value=1 1\r\n   \nm,device=d value=2 2\n")
    assert [p.line for p in points] == [3, 5]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("m", "no fields"),
        ("m,device=d", "no fields"),
        ("m value=", "expected key=value"),
        ("m value=abc", "bad field value"),
        ("m value=1 12x", "bad timestamp"),
        ("m value=1 1 2", "after the timestamp"),
        ('m s="unterminated', "unterminated"),
        ("m,tagonly value=1", "bad tag"),
        (",device=d value=1", "empty measurement"),
        ("m value=nan", "bad field value"),
    ],
)
def test_syntax_errors_name_the_line(line: str, problem: str) -> None:
    with pytest.raises(lineprotocol.LineError) as caught:
        lineprotocol.parse("m,device=d value=1\n" + line)
    assert caught.value.line == 2
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("precision", "raw", "ms"),
    [("ns", TS_MS * 10**6, TS_MS), ("us", TS_MS * 1000, TS_MS), ("ms", TS_MS, TS_MS), ("s", TS_S, TS_MS)],
)
def test_precision(precision: str, raw: int, ms: int) -> None:
    assert lineprotocol.to_ms(raw, precision) == ms


def test_mapping_to_readings() -> None:
    points = lineprotocol.parse(TELEGRAF)
    batch = lineprotocol.to_readings(points, device_tag="host", precision="ns")
    assert not batch.errors
    got = {(r.device, r.metric): (r.value, r.ts, r.tags) for r in batch.readings}
    assert got[("web-01", "cpu.usage_idle")] == (97.5, TS_MS, {"cpu": "cpu-total"})
    assert got[("web-01", "mem.used")][0] == 123456789.0
    assert ("web-01", "http_response.response_time") in got
    assert batch.skipped_fields == 2  # result="success" and up=true
    assert len(batch.readings) == 6
    # A field named `value` keeps the measurement's name.
    single = lineprotocol.to_readings(
        lineprotocol.parse("temperature,device=pump-1 value=71.5"), device_tag="device", precision="ns"
    )
    assert [(r.device, r.metric, r.value) for r in single.readings] == [("pump-1", "temperature", 71.5)]


# --- the endpoint ---------------------------------------------------------------
async def write(client: QuartClient, body: str | bytes, **params: str) -> Any:
    return await client.post("/api/write", data=body, query_string=params, headers={"Content-Type": "text/plain"})


async def latest(client: QuartClient, device: str) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/metrics/latest", query_string={"device": device})
    return {s["metric"]: s for s in (await response.get_json())["series"]}


async def test_write_stores_each_numeric_field(client: QuartClient) -> None:
    body = f"pump,device=pump-1,site=north temp=71.5,rpm=1480i {TS_S}\npower,device=pump-1 value=3.2 {TS_S}\n"
    response = await write(client, body, precision="s")
    assert response.status_code == 204
    assert response.headers["X-Livedash-Accepted"] == "3"
    assert response.headers["X-Livedash-Skipped-Fields"] == "0"
    got = await latest(client, "pump-1")
    assert set(got) == {"pump.temp", "pump.rpm", "power"}
    assert got["pump.temp"]["value"] == 71.5 and got["pump.temp"]["ts"] == TS_MS
    assert got["pump.temp"]["tags"] == {"site": "north"}


async def test_telegraf_batch_with_host_as_device(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(line_device_tag="host"))
    async with app.test_app():
        client = app.test_client()
        # Telegraf's InfluxDB output gzips by default and adds ?db=.
        response = await client.post(
            "/api/write",
            data=gzip.compress(TELEGRAF.encode()),
            query_string={"db": "telegraf"},
            headers={"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"},
        )
        assert response.status_code == 204, await response.get_data()
        assert response.headers["X-Livedash-Accepted"] == "6"
        assert response.headers["X-Livedash-Skipped-Fields"] == "2"
        got = await latest(client, "web-01")
        assert got["cpu.usage_idle"]["value"] == 97.5
        assert got["cpu.usage_idle"]["ts"] == TS_MS


async def test_bad_lines_are_named_and_the_good_ones_stored(client: QuartClient) -> None:
    """InfluxDB's partial write: a bad line (syntax or reading) is named in a 400, the others are stored."""
    body = (
        f"m,device=d a=1 {TS_S}\n"
        f"m,device=d b=oops {TS_S}\n"  # syntax
        f"m,device=no\\ spaces c=2 {TS_S}\n"  # a device that is not a slug
        f"m,site=x d=3 {TS_S}\n"  # no device tag
        f"m,device=d,device=e e=4 {TS_S}\n"  # which device?
        f"m,device=d f=5,g=6 {TS_S}\n"
    )
    response = await write(client, body, precision="s")
    assert response.status_code == 400
    answer = await response.get_json()
    assert answer["error"] == "partial_write"
    assert answer["accepted"] == 3 and answer["rejected_lines"] == 4
    assert [(d["line"], d.get("field")) for d in answer["detail"]] == [(2, None), (3, "device"), (4, "tags"), (5, None)]
    assert "oops" in answer["detail"][0]["error"] and "duplicate tag key 'device'" in answer["detail"][3]["error"]
    assert response.headers["X-Livedash-Accepted"] == "3"
    assert set(await latest(client, "d")) == {"m.a", "m.f", "m.g"}


async def test_a_bad_line_takes_none_of_its_fields(client: QuartClient) -> None:
    # One field's reading is invalid (a metric name too long): the line's other fields are not stored either.
    response = await write(client, f"m,device=d ok=1,{'x' * 80}=2\nm,device=d fine=3")
    assert response.status_code == 400
    answer = await response.get_json()
    assert answer["accepted"] == 1 and answer["detail"][0]["line"] == 1
    assert set(await latest(client, "d")) == {"m.fine"}


async def test_only_bad_lines_store_nothing(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    before = set(sync_client.scan_iter(match=key_prefix + "*"))
    response = await write(client, "m,device=d value=oops\nm,site=x value=3\n")
    assert response.status_code == 400
    answer = await response.get_json()
    assert answer["error"] == "bad_line_protocol" and answer["accepted"] == 0
    assert [d["line"] for d in answer["detail"]] == [1, 2]
    assert set(sync_client.scan_iter(match=key_prefix + "*")) == before


CORPUS = json.loads((Path(__file__).parent / "data" / "lineprotocol_corpus.json").read_text())


@pytest.mark.parametrize("case", CORPUS["valid"], ids=[c["why"] for c in CORPUS["valid"]])
def test_corpus_valid(case: dict[str, Any]) -> None:
    point = parse_one(case["line"])
    assert (point.measurement, point.tags, point.fields, point.timestamp) == (
        case["measurement"],
        case["tags"],
        case["fields"],
        case["timestamp"],
    )


@pytest.mark.parametrize("case", CORPUS["invalid"], ids=[c["why"] for c in CORPUS["invalid"]])
def test_corpus_invalid(case: dict[str, Any]) -> None:
    points, errors = lineprotocol.parse_all(f"m v=1\n{case['line']}\nm v=2")
    assert len(points) == 2, "the lines around a bad one still parse"
    assert len(errors) == 1 and errors[0].line == 2
    assert case["error"] in errors[0].message


def test_a_string_with_newlines_keeps_the_line_numbers() -> None:
    points, errors = lineprotocol.parse_all('m s="a\nb\nc",v=1\nm v=oops\nm v=2')
    assert [p.line for p in points] == [1, 5]
    assert [e.line for e in errors] == [4]


@pytest.mark.parametrize(
    ("body", "params", "headers", "status"),
    [
        ("m,device=d value=1", {"precision": "h"}, {}, 400),
        ("", {}, {}, 400),
        ('m,device=d s="only a string"', {}, {}, 422),
        ('{"device": "d"}', {}, {"Content-Type": "application/json"}, 415),
        (b"\xff\xfe", {}, {}, 400),
        ("m,device=d value=1", {}, {"Content-Encoding": "gzip"}, 400),
        ("m,device=d value=1", {}, {"Content-Encoding": "br"}, 415),
    ],
)
async def test_bad_requests_are_4xx(
    client: QuartClient, body: str | bytes, params: dict[str, str], headers: dict[str, str], status: int
) -> None:
    response = await client.post(
        "/api/write", data=body, query_string=params, headers={"Content-Type": "text/plain", **headers}
    )
    assert response.status_code == status
    assert "error" in await response.get_json()


async def test_gzip_bomb_is_refused(make_settings: Callable[..., Settings]) -> None:
    app: Quart = create_app(make_settings(max_body_bytes=4096))
    async with app.test_app():
        bomb = gzip.compress(b"m,device=d value=1\n" * 10_000)
        response = await app.test_client().post(
            "/api/write", data=bomb, headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"}
        )
        assert response.status_code == 413


async def test_batch_limit(make_settings: Callable[..., Settings]) -> None:
    # 413, nothing stored: more readings than LIVEDASH_LINE_MAX_READINGS in one request.
    app = create_app(make_settings(line_max_readings=2))
    async with app.test_app():
        response = await app.test_client().post(
            "/api/write", data="m,device=d a=1,b=2,c=3", headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 413
        assert (await response.get_json())["error"] == "batch_too_large"

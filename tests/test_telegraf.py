"""Telegraf and InfluxDB clients, with their defaults, lose nothing (issue 19, item 4).

Each request is built as Telegraf builds it from the configurations in
docs/ingest.md: the URL it derives from `urls` (outputs.influxdb appends
`/write` and `/query`, outputs.influxdb_v2 `/api/v2/write`), its credentials
(Basic with the token as the password, `Token`, a Bearer header), gzip, and
nanosecond timestamps; a default batch of 1,000 metrics.
"""

from __future__ import annotations

import base64
import gzip
import re
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from quart import Quart

from app import create_app
from app.settings import Settings

from .types import QuartClient

ROOT = Path(__file__).resolve().parent.parent
SECRET = "telegraf-test-secret-key-0123456789"
ADMIN = "telegraf-admin-token-0123456789"
FIELDS = ("usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait")


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Quart]:
    application = create_app(make_settings(auth="on", secret_key=SECRET, admin_token=ADMIN, line_device_tag="host"))
    async with application.test_app():
        yield application


@pytest.fixture
async def token(app: Quart) -> str:
    """A device token, what a collector is given."""
    response = await app.test_client().post(
        "/api/tokens", json={"role": "device", "name": "telegraf"}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code == 201, await response.get_data()
    return str((await response.get_json())["token"])


def telegraf_outputs() -> dict[str, dict[str, Any]]:
    """The Telegraf output blocks of docs/ingest.md, by plugin name."""
    text = (ROOT / "docs" / "ingest.md").read_text()
    blocks: dict[str, dict[str, Any]] = {}
    for block in re.findall(r"```toml\n(.*?)```", text, re.S):
        for name, configs in tomllib.loads(block).get("outputs", {}).items():
            blocks[name] = configs[0]
    return blocks


def env(value: str, token: str) -> str:
    return value.replace("${LIVEDASH_TOKEN}", token)


def request_for(plugin: str, config: dict[str, Any], token: str) -> tuple[str, dict[str, str]]:
    """The path and headers Telegraf's ``plugin`` sends a write with (as its code builds them)."""
    headers = {"Content-Type": "text/plain; charset=utf-8", "User-Agent": "Telegraf/1.32.0"}
    if config.get("content_encoding") == "gzip":
        headers["Content-Encoding"] = "gzip"
    if plugin == "influxdb":
        url = urlsplit(config["urls"][0])
        query = {"db": config.get("database", "telegraf")}
        if "username" in config or "password" in config:
            pair = f"{config.get('username', '')}:{env(config.get('password', ''), token)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        return url.path.rstrip("/") + "/write?" + urlencode(query), headers
    if plugin == "influxdb_v2":
        url = urlsplit(config["urls"][0])
        headers["Authorization"] = "Token " + env(config["token"], token)
        query = {"bucket": config["bucket"], "org": config["organization"]}
        return url.path.rstrip("/") + "/api/v2/write?" + urlencode(query), headers
    assert plugin == "http"
    url = urlsplit(config["url"])
    headers.update({k: env(v, token) for k, v in config.get("headers", {}).items()})
    return url.path + ("?" + url.query if url.query else ""), headers


def cpu_batch(lines: int, fields: int, host: str = "web-01") -> str:
    """``lines`` cpu metrics of ``fields`` fields, 10 cpus a sample, ns timestamps of the last minutes."""
    now_ns = time.time_ns() - lines * 1_000_000_000
    out = []
    for i in range(lines):
        cpu, sample = i % 10, i // 10
        values = ",".join(f"f{f}={(i * 7 + f) % 100}.5" for f in range(fields))
        out.append(f"cpu,cpu=cpu{cpu},host={host} {values} {now_ns + sample * 1_000_000_000}")
    return "\n".join(out) + "\n"


async def series_points(client: QuartClient, token: str, host: str, metric: str, cpu: str) -> int:
    response = await client.get(
        "/api/metrics/series",
        query_string={"device": host, "metric": metric, "tag": f"cpu:{cpu}", "points": "10000", "from": "-1h"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 200, await response.get_data()
    series = [s for s in (await response.get_json())["series"] if s["tags"] == {"cpu": cpu}]
    assert len(series) == 1
    return len(series[0]["points"])


@pytest.mark.parametrize("plugin", ["influxdb", "influxdb_v2", "http"])
async def test_documented_telegraf_output_stores_a_default_batch_completely(
    app: Quart, token: str, plugin: str
) -> None:
    config = telegraf_outputs()[plugin]
    path, headers = request_for(plugin, config, token)
    client = app.test_client()
    host = f"host-{plugin.replace('_', '-')}"
    body = cpu_batch(1000, 10, host=host)  # Telegraf's metric_batch_size = 1000, 10 fields: 10,000 readings
    data = gzip.compress(body.encode()) if headers.get("Content-Encoding") == "gzip" else body.encode()
    response = await client.post(path, data=data, headers=headers)
    assert response.status_code == 204, await response.get_data()
    assert response.headers["X-Livedash-Accepted"] == "10000"
    # Every reading is in the history: 100 samples of each of the 10 cpus.
    assert await series_points(client, token, host, "cpu.f3", "cpu7") == 100


async def test_twenty_fields_a_metric_fit_one_request(app: Quart, token: str) -> None:
    response = await app.test_client().post(
        "/api/v2/write?org=o&bucket=b&precision=ns",
        data=gzip.compress(cpu_batch(1000, 20).encode()),
        headers={"Authorization": f"Token {token}", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 204, await response.get_data()
    assert response.headers["X-Livedash-Accepted"] == "20000"


async def test_create_database_is_answered(app: Quart, token: str) -> None:
    config = telegraf_outputs()["influxdb"]
    path, headers = request_for("influxdb", config, token)
    query_path = path.split("/write")[0] + "/query"
    response = await app.test_client().post(
        query_path,
        form={"q": 'CREATE DATABASE "telegraf"'},
        headers={"Authorization": headers["Authorization"]},
    )
    assert response.status_code == 200, await response.get_data()
    assert await response.get_json() == {"results": [{"statement_id": 0}]}
    response = await app.test_client().post(
        query_path, form={"q": "SELECT * FROM cpu"}, headers={"Authorization": headers["Authorization"]}
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("precision", "factor"), [("ns", 1_000_000), ("us", 1_000), ("ms", 1), ("s", 0)], ids=["ns", "us", "ms", "s"]
)
async def test_v2_precision(app: Quart, token: str, precision: str, factor: int) -> None:
    ts_ms = (int(time.time()) - 60) * 1000
    raw = ts_ms // 1000 if factor == 0 else ts_ms * factor
    client = app.test_client()
    response = await client.post(
        f"/api/v2/write?org=o&bucket=b&precision={precision}",
        data=f"pump,host=p-{precision} temp=1.5 {raw}",
        headers={"Authorization": f"Token {token}"},
    )
    assert response.status_code == 204, await response.get_data()
    latest = await client.get(
        "/api/metrics/latest", query_string={"device": f"p-{precision}"}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert [s["ts"] for s in (await latest.get_json())["series"]] == [ts_ms]


async def test_basic_auth_only_on_the_influxdb_endpoints(app: Quart, token: str) -> None:
    client = app.test_client()
    good = "Basic " + base64.b64encode(f"anyone:{token}".encode()).decode()
    bad = "Basic " + base64.b64encode(b"anyone:ldt_not-a-real-token-at-all").decode()
    assert (await client.post("/api/write", data="m,host=h v=1", headers={"Authorization": good})).status_code == 204
    assert (await client.post("/api/write", data="m,host=h v=1", headers={"Authorization": bad})).status_code == 401
    admin = "Basic " + base64.b64encode(f"admin:{ADMIN}".encode()).decode()
    assert (await client.get("/api/metrics/latest", headers={"Authorization": admin})).status_code == 401


async def test_a_bad_line_in_a_telegraf_batch_loses_only_itself(app: Quart, token: str) -> None:
    lines = cpu_batch(1000, 10).splitlines()
    lines[500] = "cpu,cpu=cpu0,host=web-01,host=web-02 f0=1 1"  # a duplicate device tag
    lines[700] = f"cpu,cpu=cpu0,host=web-01,long={'x' * 300} f0=1"  # a tag value over the limit
    response = await app.test_client().post(
        "/api/write",
        data=gzip.compress("\n".join(lines).encode()),
        headers={"Authorization": f"Token {token}", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 400
    answer = await response.get_json()
    assert answer["error"] == "partial_write"
    assert answer["accepted"] == 998 * 10
    assert [d["line"] for d in answer["detail"]] == [501, 701]

"""Readings ingest: validation, last-write-wins, history, nothing half-written."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis as sync_redis

from .types import QuartClient

# Inside every retention (raw points are kept 6 h by default): the start of the previous hour.
TS = (int(time.time()) // 3600 - 1) * 3_600_000


async def post(client: QuartClient, body: Any) -> Any:
    return await client.post("/api/metrics", json=body)


async def latest(client: QuartClient, **params: str) -> list[dict[str, Any]]:
    response = await client.get("/api/metrics/latest", query_string=params)
    assert response.status_code == 200
    return (await response.get_json())["series"]  # type: ignore[no-any-return]


def stored_keys(sync_client: sync_redis.Redis, prefix: str) -> list[bytes]:
    """Keys a request wrote: everything under the prefix but what the app writes at start (epoch, alert config)."""
    at_start = {(prefix + "epoch").encode(), (prefix + "alerts:config").encode()}
    return [k for k in sync_client.scan_iter(match=prefix + "*") if k not in at_start]


async def test_one_reading_is_accepted_and_becomes_latest(client: QuartClient) -> None:
    response = await post(client, {"device": "pump-1", "metric": "temp", "value": 21.5, "ts": TS, "unit": "°C"})
    assert response.status_code == 202
    body = await response.get_json()
    assert body["accepted"] == 1 and "-" in body["cursor"]
    [series] = await latest(client)
    assert series == {"device": "pump-1", "metric": "temp", "value": 21.5, "ts": TS, "unit": "°C", "tags": {}}


async def test_batch_is_accepted_whole(client: QuartClient) -> None:
    batch = [{"device": "d", "metric": f"m{i}", "value": i, "ts": TS + i} for i in range(50)]
    response = await post(client, batch)
    assert response.status_code == 202
    assert (await response.get_json())["accepted"] == 50
    assert len(await latest(client, device="d")) == 50


async def test_rfc3339_and_missing_ts(client: QuartClient) -> None:
    await post(client, {"device": "d", "metric": "a", "value": 1, "ts": "2026-11-22T06:00:00.250Z"})
    await post(client, {"device": "d", "metric": "b", "value": 2})
    by_metric = {r["metric"]: r for r in await latest(client)}
    assert by_metric["a"]["ts"] == 1795327200250
    assert by_metric["b"]["ts"] > 1795327200250  # server time


async def test_last_write_wins_by_reading_ts(client: QuartClient) -> None:
    """Readings posted out of order leave the newest-ts value as latest; all go into history."""
    for ts, value in [(TS + 2000, 3.0), (TS, 1.0), (TS + 1000, 2.0)]:
        assert (await post(client, {"device": "d", "metric": "m", "value": value, "ts": ts})).status_code == 202
    [series] = await latest(client)
    assert (series["value"], series["ts"]) == (3.0, TS + 2000)
    response = await client.get("/api/metrics/series", query_string={"device": "d", "metric": "m"})
    [history] = (await response.get_json())["series"]
    assert history["points"] == [[TS, 1.0], [TS + 1000, 2.0], [TS + 2000, 3.0]]


async def test_equal_ts_later_arrival_wins(client: QuartClient) -> None:
    await post(client, {"device": "d", "metric": "m", "value": 1.0, "ts": TS})
    await post(client, {"device": "d", "metric": "m", "value": 2.0, "ts": TS})
    [series] = await latest(client)
    assert series["value"] == 2.0


async def test_history_is_bounded(make_settings: Any) -> None:
    from app import create_app

    app = create_app(make_settings(history_size=5))
    async with app.test_app():
        client = app.test_client()
        await post(client, [{"device": "d", "metric": "m", "value": i, "ts": TS + i} for i in range(20)])
        response = await client.get("/api/metrics/series", query_string={"device": "d", "metric": "m"})
        [history] = (await response.get_json())["series"]
        assert [p[1] for p in history["points"]] == [15, 16, 17, 18, 19]


async def test_form_encoded_reading(client: QuartClient) -> None:
    response = await client.post(
        "/api/metrics", form={"device": "d", "metric": "m", "value": "4.5", "unit": "V", "tags": "line=2,site=x"}
    )
    assert response.status_code == 202
    [series] = await latest(client)
    assert series["value"] == 4.5 and series["tags"] == {"line": "2", "site": "x"}


BAD_READINGS = [
    pytest.param({"device": "d", "metric": "m", "value": "NaN"}, "value", id="nan-string"),
    pytest.param({"device": "d", "metric": "m", "value": "inf"}, "value", id="inf-string"),
    pytest.param({"device": "d", "metric": "m", "value": True}, "value", id="bool"),
    pytest.param({"device": "d", "metric": "m", "value": "high"}, "value", id="text"),
    pytest.param({"device": "d", "metric": "m"}, "value", id="missing-value"),
    pytest.param({"device": "bad device!", "metric": "m", "value": 1}, "device", id="bad-slug"),
    pytest.param({"device": "d" * 65, "metric": "m", "value": 1}, "device", id="long-slug"),
    pytest.param({"device": "d", "metric": "m", "value": 1, "vaule": 2}, "vaule", id="unknown-field"),
    pytest.param({"device": "d", "metric": "m", "value": 1, "ts": "yesterday"}, "ts", id="bad-ts"),
    pytest.param({"device": "d", "metric": "m", "value": 1, "ts": 1_700_000_000}, "ts", id="ts-in-seconds"),
    pytest.param({"device": "d", "metric": "m", "value": 1, "ts": "2026-01-01T00:00:00"}, "ts", id="naive-ts"),
    pytest.param({"device": "d", "metric": "m", "value": 1, "unit": "u" * 17}, "unit", id="long-unit"),
    pytest.param({"device": "d", "metric": "m", "value": 1, "tags": {"k": 1}}, "tags.k", id="tag-not-text"),
]


@pytest.mark.parametrize(("body", "field"), BAD_READINGS)
async def test_bad_reading_names_the_field_and_stores_nothing(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str, body: dict[str, Any], field: str
) -> None:
    response = await post(client, body)
    assert response.status_code == 422
    error = await response.get_json()
    assert error["error"] == "invalid"
    assert field in [d["field"] for d in error["detail"]]
    assert stored_keys(sync_client, key_prefix) == []


async def test_real_nan_in_json_is_refused(client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str) -> None:
    # Python's json emits NaN/Infinity literals; a strict JSON parser refuses them.
    response = await client.post(
        "/api/metrics", data='{"device":"d","metric":"m","value":NaN}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert (await response.get_json())["error"] == "malformed_json"
    assert stored_keys(sync_client, key_prefix) == []


async def test_batch_with_one_bad_item_stores_nothing(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    batch: list[dict[str, Any]] = [{"device": "d", "metric": "m", "value": i, "ts": TS + i} for i in range(10)]
    batch[7]["value"] = "-Infinity"
    response = await post(client, batch)
    assert response.status_code == 422
    detail = (await response.get_json())["detail"]
    assert [d["field"] for d in detail] == ["7.value"]
    assert stored_keys(sync_client, key_prefix) == []


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "malformed_json"),
        ("", "application/json", 400, "bad_request"),
        ("42", "application/json", 422, "invalid"),
        ("[]", "application/json", 422, "invalid"),
        ("device=d", "text/plain", 415, "unsupported_media_type"),
    ],
)
async def test_malformed_bodies(
    client: QuartClient,
    sync_client: sync_redis.Redis,
    key_prefix: str,
    data: str,
    content_type: str,
    status: int,
    code: str,
) -> None:
    response = await client.post("/api/metrics", data=data, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert (await response.get_json())["error"] == code
    assert stored_keys(sync_client, key_prefix) == []


async def test_batch_over_the_limit(make_settings: Any, sync_client: sync_redis.Redis, key_prefix: str) -> None:
    from app import create_app

    app = create_app(make_settings(max_batch=10))
    async with app.test_app():
        response = await post(app.test_client(), [{"device": "d", "metric": "m", "value": 1}] * 11)
        assert response.status_code == 422
        assert (await response.get_json())["error"] == "batch_too_large"
    assert stored_keys(sync_client, key_prefix) == []


async def test_huge_body_is_413(make_settings: Any, sync_client: sync_redis.Redis, key_prefix: str) -> None:
    from app import create_app

    app = create_app(make_settings(max_body_bytes=2048))
    async with app.test_app():
        big = "[" + ",".join(['{"device":"d","metric":"m","value":1}'] * 200) + "]"
        response = await app.test_client().post("/api/metrics", data=big, headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert (await response.get_json())["error"] == "too_large"
    assert stored_keys(sync_client, key_prefix) == []


async def test_unknown_route_and_method_are_json(client: QuartClient) -> None:
    response = await client.get("/api/nope")
    assert response.status_code == 404 and (await response.get_json())["error"] == "not_found"
    response = await client.put("/api/metrics")
    assert response.status_code == 405 and (await response.get_json())["error"] == "method_not_allowed"


async def test_bad_query_parameters(client: QuartClient) -> None:
    for path, params in [
        ("/api/metrics/latest", {"device": "no spaces"}),
        ("/api/metrics/series", {"limit": "many"}),
        ("/api/events", {"wait": "-1"}),
        ("/api/events", {"limit": "0"}),
        ("/api/stream", {"format": "xml"}),
    ]:
        response = await client.get(path, query_string=params)
        assert response.status_code == 400, (path, params)
        assert (await response.get_json())["error"] == "bad_query"

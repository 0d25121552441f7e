"""Series identity is device + metric + tags: per-tag series, tag filters, series limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis as sync_redis

from app import create_app
from app.settings import Settings
from app.storage.keyspace import series_id

from .types import QuartClient

# Inside every retention (raw points are kept 6 h by default): the start of the previous hour.
TS = (int(time.time()) // 3600 - 1) * 3_600_000
TS_S = TS // 1000


def cpu_lines(cores: int, ts_s: int, host: str = "web-01") -> str:
    return "".join(
        f"cpu,cpu=cpu{c},host={host} usage_user={10 + c}.5,usage_idle={80 - c}.25 {ts_s}\n" for c in range(cores)
    )


def stored_keys(sync_client: sync_redis.Redis, prefix: str) -> list[bytes]:
    return [k for k in sync_client.scan_iter(match=prefix + "*") if k != (prefix + "epoch").encode()]


def test_series_id_is_canonical_and_unambiguous() -> None:
    assert series_id("d", "m") == "d/m"
    assert series_id("d", "m", {}) == "d/m"  # no tags: the id every series had before tags
    assert series_id("d", "m", {"b": "2", "a": "1"}) == series_id("d", "m", {"a": "1", "b": "2"}) == "d/m{a=1,b=2}"
    # A value holding the separators cannot pose as two tags.
    assert series_id("d", "m", {"a": "1,b=2"}) != series_id("d", "m", {"a": "1", "b": "2"})
    assert series_id("d", "m", {"a": "x}"}) == "d/m{a=x\\}}"


async def test_eight_cpu_tags_are_eight_series_and_filter(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(line_device_tag="host"))
    async with app.test_app():
        client: QuartClient = app.test_client()
        for step in range(3):
            response = await client.post(
                "/api/write",
                data=cpu_lines(8, TS_S + step),
                query_string={"precision": "s"},
                headers={"Content-Type": "text/plain"},
            )
            assert response.status_code == 204, await response.get_data()

        response = await client.get("/api/metrics/latest", query_string={"metric": "cpu.usage_user"})
        series = (await response.get_json())["series"]
        assert sorted(s["tags"]["cpu"] for s in series) == [f"cpu{c}" for c in range(8)]
        assert {s["value"] for s in series} == {10.5 + c for c in range(8)}

        # One value of a key, several values of a key (OR), and two keys (AND).
        async def latest(*tags: str) -> list[dict[str, Any]]:
            query = [("metric", "cpu.usage_user"), *(("tag", t) for t in tags)]
            response = await client.get("/api/metrics/latest", query_string=query)
            assert response.status_code == 200
            return (await response.get_json())["series"]  # type: ignore[no-any-return]

        [one] = await latest("cpu:cpu3")
        assert one["value"] == 13.5 and one["tags"] == {"cpu": "cpu3"}
        assert [s["tags"]["cpu"] for s in await latest("cpu:cpu1", "cpu:cpu6")] == ["cpu1", "cpu6"]
        assert await latest("cpu:cpu1", "host:web-02") == []
        assert len(await latest("cpu:cpu1", "cpu:cpu2", "nope:x")) == 0

        response = await client.get(
            "/api/metrics/series",
            query_string=[("device", "web-01"), ("metric", "cpu.usage_idle"), ("tag", "cpu:cpu7")],
        )
        [history] = (await response.get_json())["series"]
        assert history["tags"] == {"cpu": "cpu7"}
        assert history["points"] == [[(TS_S + s) * 1000, 73.25] for s in range(3)]  # one core's points only

        response = await client.get("/api/metrics/series", query_string={"tag": "cpu"})
        assert response.status_code == 400 and (await response.get_json())["error"] == "bad_query"


async def test_metric_event_carries_the_series(client: QuartClient) -> None:
    cursor = (await (await client.get("/api/events")).get_json())["cursor"]
    reading = {"device": "d", "metric": "m", "value": 1.0, "ts": TS, "tags": {"core": "1"}}
    assert (await client.post("/api/metrics", json=reading)).status_code == 202
    response = await client.get("/api/events", query_string={"since": cursor})
    [event] = [e for e in (await response.get_json())["events"] if e["type"] == "metric"]
    assert event["data"]["series"] == "d/m{core=1}" and event["data"]["tags"] == {"core": "1"}


async def test_alert_rules_are_per_tagged_series(client: QuartClient) -> None:
    rule = {"device": "d", "metric": "m", "tags": {"core": "1"}, "op": "above", "threshold": 50}
    response = await client.post("/api/alerts/rules", json=rule)
    assert response.status_code == 201, await response.get_json()
    batch = [
        {"device": "d", "metric": "m", "value": 90.0, "ts": TS, "tags": {"core": "0"}},  # another series
        {"device": "d", "metric": "m", "value": 10.0, "ts": TS, "tags": {"core": "1"}},
    ]
    assert (await client.post("/api/metrics", json=batch)).status_code == 202
    [stored] = (await (await client.get("/api/alerts/rules")).get_json())["rules"]
    assert stored["tags"] == {"core": "1"} and stored["state"]["state"] == "ok"
    await client.post(
        "/api/metrics", json={"device": "d", "metric": "m", "value": 60.0, "ts": TS + 1, "tags": {"core": "1"}}
    )
    [stored] = (await (await client.get("/api/alerts/rules")).get_json())["rules"]
    assert stored["state"]["state"] == "firing"


async def test_series_limits_refuse_the_whole_batch(
    make_settings: Callable[..., Settings], sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    app = create_app(make_settings(max_series_per_device=3, max_series=5))
    async with app.test_app():
        client: QuartClient = app.test_client()

        def reading(device: str, req: int) -> dict[str, Any]:
            return {"device": device, "metric": "m", "value": 1.0, "ts": TS, "tags": {"request": str(req)}}

        # Four series on one device: refused whole, nothing written (not even the first three).
        before = stored_keys(sync_client, key_prefix)  # what the app wrote at start
        response = await client.post("/api/metrics", json=[reading("a", i) for i in range(4)])
        assert response.status_code == 422
        body = await response.get_json()
        assert body["error"] == "series_limit" and body["limit"] == "LIVEDASH_MAX_SERIES_PER_DEVICE"
        assert body["device"] == "a" and body["max"] == 3 and "LIVEDASH_MAX_SERIES_PER_DEVICE" in body["detail"]
        assert stored_keys(sync_client, key_prefix) == before

        assert (await client.post("/api/metrics", json=[reading("a", i) for i in range(3)])).status_code == 202
        # Old series take more readings; a fourth one does not fit.
        assert (await client.post("/api/metrics", json=[reading("a", 0), reading("a", 2)])).status_code == 202
        assert (await client.post("/api/metrics", json=reading("a", 9))).status_code == 422

        # The total: 3 on a, 2 more fit on b, a 6th is refused; the batch's other readings are not stored either.
        assert (await client.post("/api/metrics", json=[reading("b", 0), reading("b", 1)])).status_code == 202
        response = await client.post("/api/metrics", json=[reading("a", 0), reading("c", 0)])
        assert response.status_code == 422
        body = await response.get_json()
        assert body["limit"] == "LIVEDASH_MAX_SERIES" and body["max"] == 5
        latest = (await (await client.get("/api/metrics/latest")).get_json())["series"]
        assert len(latest) == 5 and all(s["device"] in ("a", "b") for s in latest)
        assert sync_client.hgetall(f"{key_prefix}series-per-device") == {b"a": b"3", b"b": b"2"}


async def test_dashboard_has_a_tile_per_tagged_series(client: QuartClient) -> None:
    batch = [
        {"device": "d", "metric": "m", "value": 1.0 + core, "ts": TS + i, "tags": {"core": str(core)}}
        for i in range(3)
        for core in (0, 1)
    ]
    batch.append({"device": "d", "metric": "m", "value": 9.0, "ts": TS})  # the untagged series keeps its old tile
    assert (await client.post("/api/metrics", json=batch)).status_code == 202
    page = await (await client.get("/")).get_data(as_text=True)
    assert 'id="tile--d--m"' in page and 'data-series="d/m"' in page
    for core in (0, 1):
        assert f'id="tile--d--m--core_3d{core}"' in page and f'data-series="d/m{{core={core}}}"' in page
        assert f'<span class="tag">core={core}</span>' in page
        assert f'id="value--d--m--core_3d{core}"' in page
    # Each tile's sparkline holds its own series' points only.
    for value in (1.0, 2.0):
        assert page.count(f"[[{TS}, {value}], [{TS + 1}, {value}], [{TS + 2}, {value}]]") == 1


async def test_series_page_of_a_tagged_series(client: QuartClient) -> None:
    batch = [
        {"device": "d", "metric": "m", "value": 1.0 + core, "ts": TS + i, "tags": {"core": str(core)}}
        for i in range(2)
        for core in (0, 1)
    ]
    batch.append({"device": "d", "metric": "m", "value": 9.0, "ts": TS})
    assert (await client.post("/api/metrics", json=batch)).status_code == 202
    dashboard = await (await client.get("/")).get_data(as_text=True)
    assert 'href="/series/d/m?tag=core%3A1"' in dashboard and 'href="/series/d/m"' in dashboard

    page = await (await client.get("/series/d/m", query_string={"tag": "core:1"})).get_data(as_text=True)
    assert 'data-series="d/m{core=1}"' in page and '<span class="tag">core=1</span>' in page
    assert 'id="value--d--m--core_3d1"' in page and 'data-value="2.0"' in page
    assert f"[[{TS}, 2.0], [{TS + 1}, 2.0]]" in page  # its own history only
    page = await (await client.get("/series/d/m")).get_data(as_text=True)
    assert 'data-series="d/m"' in page and 'data-value="9.0"' in page and f"[[{TS}, 9.0]]" in page


async def test_rule_form_of_a_tagged_series_page(client: QuartClient) -> None:
    await client.post("/api/metrics", json={"device": "d", "metric": "m", "value": 1.0, "tags": {"core": "1"}})
    page = await (await client.get("/series/d/m", query_string={"tag": "core:1"})).get_data(as_text=True)
    assert '<input type="hidden" name="tags" value="core=1">' in page
    form = {"device": "d", "metric": "m", "tags": "core=1", "op": "above", "threshold": "5"}
    response = await client.post("/api/alerts/rules", form=form)
    assert response.status_code == 201
    assert (await response.get_json())["tags"] == {"core": "1"}
    response = await client.post("/api/alerts/rules", form={**form, "tags": "core"})
    assert response.status_code == 422  # not k=v: the model names the field

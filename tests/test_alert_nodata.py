"""No-data rules: a sweeper in every process, each transition exactly once, resolved by the next reading."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from .servers import AppServer
from .types import QuartClient
from .waiting import async_wait_until, wait_until

TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def alert_events(http: httpx.Client, url: str, cursor: str) -> list[dict[str, Any]]:
    body = http.get(f"{url}/api/events?since={cursor}").json()
    assert "reset" not in body, body
    return [e["data"] for e in body["events"] if e["type"] == "alert"]


def test_no_data_fires_once_across_two_workers_and_resolves_on_the_next_reading(
    start_server: Callable[..., AppServer],
) -> None:
    env = {"LIVEDASH_ALERT_SWEEP_INTERVAL": "0.1"}
    servers = [start_server(workers=2, **env), start_server(**env)]  # three processes sweep
    with httpx.Client(timeout=10) as http:
        a, b = servers[0].url, servers[1].url
        cursor = http.get(a + "/api/events").json()["cursor"]
        now = int(time.time() * 1000)
        assert (
            http.post(
                a + "/api/metrics", json={"device": "pump-1", "metric": "temp", "value": 1, "ts": now}
            ).status_code
            == 202
        )
        rule = http.post(
            a + "/api/alerts/rules",
            json={"device": "pump-1", "metric": "temp", "kind": "no_data", "no_data_seconds": 1, "name": "silent"},
        )
        assert rule.status_code == 201, rule.text
        sent = time.monotonic()

        firing = wait_until(
            lambda: [e for e in alert_events(http, b, cursor) if e["state"] == "firing"],
            timeout=10,
            what="no-data firing",
        )
        assert time.monotonic() - sent >= 0.9
        assert firing[0]["reason"] == "no_data" and firing[0]["rule_id"] == rule.json()["id"]
        state = http.get(b + "/api/alerts/state").json()["states"][rule.json()["id"]]
        assert state["state"] == "firing"
        # Three processes sweep 10 times a second: between firing and the next reading, one firing.
        resolved_cursor = http.get(a + "/api/events").json()["cursor"]
        assert http.post(b + "/api/metrics", json={"device": "pump-1", "metric": "temp", "value": 2}).status_code == 202
        wait_until(
            lambda: any(e["state"] == "resolved" for e in alert_events(http, a, resolved_cursor)),
            timeout=5,
            what="resolved by a reading",
        )
        events = alert_events(http, a, cursor)
        assert [(e["state"], e["reason"]) for e in events] == [("firing", "no_data"), ("resolved", "data")]

        # Silent again: fires again, once.
        wait_until(
            lambda: len([e for e in alert_events(http, b, cursor) if e["state"] == "firing"]) == 2,
            timeout=10,
            what="second no-data firing",
        )
        assert [e["state"] for e in alert_events(http, a, cursor)] == ["firing", "resolved", "firing"]


async def test_device_wide_no_data_and_old_series_fire_on_create(client: QuartClient) -> None:
    # The series' latest reading is long past: a new no-data rule on it fires in its own write.
    assert (
        await client.post("/api/metrics", json={"device": "pump-1", "metric": "temp", "value": 1, "ts": TS})
    ).status_code == 202
    old = await client.post(
        "/api/alerts/rules", json={"device": "pump-1", "metric": "temp", "kind": "no_data", "no_data_seconds": 60}
    )
    assert old.status_code == 201
    states = (await (await client.get("/api/alerts/state")).get_json())["states"]
    assert states[(await old.get_json())["id"]]["state"] == "firing"

    device = await client.post("/api/alerts/rules", json={"device": "fan-2", "kind": "no_data", "no_data_seconds": 1})
    assert device.status_code == 201, await device.get_data(as_text=True)
    rule_id = (await device.get_json())["id"]
    assert (await device.get_json())["series"] == "fan-2/*"

    async def state() -> str:
        body = await (await client.get("/api/alerts/state")).get_json()
        return body["states"][rule_id]["state"]  # type: ignore[no-any-return]

    async def firing() -> bool:
        return await state() == "firing"

    await async_wait_until(firing, timeout=10, what="device-wide firing")
    # Any series of the device resolves it.
    assert (await client.post("/api/metrics", json={"device": "fan-2", "metric": "rpm", "value": 5})).status_code == 202
    assert await state() == "ok"


async def test_bad_no_data_rules_name_the_field(client: QuartClient) -> None:
    cases = [
        ({"device": "pump-1", "kind": "no_data"}, "no_data_seconds"),
        ({"device": "pump-1", "kind": "no_data", "no_data_seconds": 0}, "no_data_seconds"),
        ({"device": "pump-1", "kind": "no_data", "no_data_seconds": "soon"}, "no_data_seconds"),
        ({"device": "pump-1", "kind": "no_data", "no_data_seconds": 10**9}, "no_data_seconds"),
        ({"device": "pump-1", "kind": "no_data", "no_data_seconds": 5, "tags": {"a": "b"}}, "tags"),
        ({"device": "pump-1", "kind": "sometimes", "no_data_seconds": 5}, "kind"),
        ({"device": "pump-1", "op": "above", "threshold": 3}, "metric"),
    ]
    for body, field in cases:
        response = await client.post("/api/alerts/rules", json=body)
        assert response.status_code == 422, body
        assert field in [d["field"] for d in (await response.get_json())["detail"]], (body, await response.get_json())
    assert (await (await client.get("/api/alerts/rules")).get_json())["rules"] == []


async def test_series_page_shows_no_data_rules(client: QuartClient) -> None:
    answer = await client.post(
        "/api/alerts/rules", json={"device": "pump-1", "metric": "temp", "kind": "no_data", "no_data_seconds": 90}
    )
    assert answer.status_code == 201
    html = await (await client.get("/series/pump-1/temp", headers={"Accept": "text/html"})).get_data(as_text=True)
    assert "no reading for 90 s" in html and 'name="no_data_seconds"' in html and "None" not in html
    # The form posts what it shows: channels as a comma list (empty: none).
    rule_id = (await answer.get_json())["id"]
    edited = await client.post(f"/api/alerts/rules/{rule_id}", form={"no_data_seconds": "120", "channels": ""})
    assert edited.status_code == 200, await edited.get_data(as_text=True)
    assert (await edited.get_json())["no_data_seconds"] == 120 and (await edited.get_json())["channels"] == []

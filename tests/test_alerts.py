"""Alert rules: versioned writes, state, and one `alert` event per transition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import redis as sync_redis

from .servers import AppServer
from .types import QuartClient
from .waiting import async_wait_until

TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


async def make_rule(client: QuartClient, **fields: Any) -> dict[str, Any]:
    body = {"device": "pump-1", "metric": "temp", "op": "above", "threshold": 80, "name": "hot"}
    body.update(fields)
    response = await client.post("/api/alerts/rules", json=body)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()  # type: ignore[no-any-return]


async def head(client: QuartClient) -> str:
    return (await (await client.get("/api/events")).get_json())["cursor"]  # type: ignore[no-any-return]


async def alerts_since(client: QuartClient, cursor: str) -> list[tuple[str, float | None]]:
    body = await (await client.get(f"/api/events?since={cursor}")).get_json()
    assert "reset" not in body, body
    return [(e["data"]["state"], e["data"]["value"]) for e in body["events"] if e["type"] == "alert"]


async def feed(client: QuartClient, values: list[float], *, start: int = TS, step: int = 1000, **kw: Any) -> None:
    for i, value in enumerate(values):
        reading = {"device": "pump-1", "metric": "temp", "value": value, "ts": start + i * step, **kw}
        response = await client.post("/api/metrics", json=reading)
        assert response.status_code == 202


async def state_of(client: QuartClient, rule_id: str) -> dict[str, Any]:
    return (await (await client.get("/api/alerts/state")).get_json())["states"][rule_id]  # type: ignore[no-any-return]


# --- rules ----------------------------------------------------------------------------


async def test_create_list_fetch_rule_with_state(client: QuartClient) -> None:
    rule = await make_rule(client, hysteresis=2.5, min_duration_ms=0)
    assert rule["version"] == 1 and rule["op"] == "above" and rule["threshold"] == 80.0 and rule["enabled"] is True
    listed = await (await client.get("/api/alerts/rules")).get_json()
    assert [r["id"] for r in listed["rules"]] == [rule["id"]]
    assert listed["rules"][0]["state"]["state"] == "ok" and listed["cursor"]
    fetched = await client.get(f"/api/alerts/rules/{rule['id']}")
    assert fetched.status_code == 200 and fetched.headers["ETag"] == '"1"'
    assert (await client.get("/api/alerts/rules?device=pump-2")).status_code == 200
    assert (await (await client.get("/api/alerts/rules?device=pump-2")).get_json())["rules"] == []


async def test_rule_version_checks_lww_and_tombstone(client: QuartClient) -> None:
    rule = await make_rule(client)
    url = f"/api/alerts/rules/{rule['id']}"
    assert (await client.post(url, json={"threshold": 90, "version": 1})).status_code == 200
    stale = await client.post(url, json={"threshold": 70, "version": 1})
    assert stale.status_code == 409 and (await stale.get_json())["current"]["threshold"] == 90
    assert (await client.post(url, json={"threshold": 95}, headers={"If-Match": 'W/"1"'})).status_code == 409
    lww = await client.post(url, json={"threshold": 95})
    assert lww.status_code == 200 and (await lww.get_json())["version"] == 3
    moved = await client.post(url, json={"metric": "rpm"})
    assert moved.status_code == 422 and (await moved.get_json())["detail"][0]["field"] == "metric"
    revisions = (await (await client.get(url + "/revisions")).get_json())["revisions"]
    assert [r["after"]["threshold"] for r in revisions] == [80, 90, 95]

    assert (await client.post(url + "/delete", json={"version": 2})).status_code == 409
    assert (await client.post(url + "/delete", json={"version": 3})).status_code == 200
    assert (await client.post(url, json={"threshold": 1, "version": 3})).status_code == 410
    assert (await client.get(url)).status_code == 410
    assert (await (await client.get("/api/alerts/rules")).get_json())["rules"] == []
    assert (await client.post("/api/alerts/rules/nope", json={"threshold": 1})).status_code == 404


async def test_rule_writes_are_events(client: QuartClient) -> None:
    cursor = await head(client)
    rule = await make_rule(client)
    await client.post(f"/api/alerts/rules/{rule['id']}", form={"threshold": "85", "enabled": "true"})
    await client.delete(f"/api/alerts/rules/{rule['id']}")
    body = await (await client.get(f"/api/events?since={cursor}")).get_json()
    assert "reset" not in body, body
    events = [e for e in body["events"] if e["type"] == "alert_rule"]
    assert [(e["data"]["action"], e["data"]["rule"]["version"]) for e in events] == [
        ("created", 1),
        ("updated", 2),
        ("deleted", 3),
    ]
    assert {e["topic"] for e in events} == {"device/pump-1"}


async def test_bad_rules_name_the_field_and_store_nothing(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    good = {"device": "pump-1", "metric": "temp", "op": "above", "threshold": 80}
    cases = [
        ({**good, "op": "sideways"}, "op"),
        ({**good, "threshold": "hot"}, "threshold"),
        ({**good, "threshold": True}, "threshold"),
        ({k: v for k, v in good.items() if k != "threshold"}, "threshold"),
        ({**good, "hysteresis": -1}, "hysteresis"),
        ({**good, "min_duration_ms": -5}, "min_duration_ms"),
        ({**good, "metric": "a b"}, "metric"),
        ({**good, "extra": 1}, "extra"),
    ]
    for body, field in cases:
        response = await client.post("/api/alerts/rules", json=body)
        assert response.status_code == 422, body
        assert field in [d["field"] for d in (await response.get_json())["detail"]], body
    stored = {k.decode() for k in sync_client.scan_iter(match=key_prefix + "alert*")}
    assert stored <= {key_prefix + "alerts:config"}  # written at start-up


# --- evaluation -----------------------------------------------------------------------


async def test_hysteresis_one_event_per_transition(client: QuartClient) -> None:
    rule = await make_rule(client, threshold=80, hysteresis=5)
    cursor = await head(client)
    # fire at 81; 78 and 76 are inside the band; resolve at 75; fire again at 81.
    await feed(client, [70, 81, 85, 90, 78, 76, 75, 72, 79, 81, 82])
    assert await alerts_since(client, cursor) == [("firing", 81), ("resolved", 75), ("firing", 81)]
    state = await state_of(client, rule["id"])
    assert state["state"] == "firing" and state["since"] == TS + 9000 and state["last_value"] == 82


async def test_below_rule_and_exact_threshold(client: QuartClient) -> None:
    await make_rule(client, op="below", threshold=10, hysteresis=0)
    cursor = await head(client)
    await feed(client, [12, 10, 9.5, 9, 10, 11])  # 10 is not below 10; back at 10 resolves (h=0)
    assert await alerts_since(client, cursor) == [("firing", 9.5), ("resolved", 10)]


async def test_min_duration_in_reading_time(client: QuartClient) -> None:
    rule = await make_rule(client, threshold=80, min_duration_ms=2000)
    cursor = await head(client)
    # 81 at t0, dip at t1 resets; above from t2: fires at t4 (2 s later), not before.
    await feed(client, [81, 79, 81, 82])
    assert await alerts_since(client, cursor) == []
    assert (await state_of(client, rule["id"]))["pending_since"] == TS + 2000
    await feed(client, [83, 84], start=TS + 4000)
    assert await alerts_since(client, cursor) == [("firing", 83)]


async def test_out_of_order_old_readings_do_not_flip_state(client: QuartClient) -> None:
    rule = await make_rule(client, threshold=80)
    cursor = await head(client)
    await feed(client, [90], start=TS + 10_000)
    await feed(client, [10, 20], start=TS)  # late, older readings
    assert await alerts_since(client, cursor) == [("firing", 90)]
    assert (await state_of(client, rule["id"]))["state"] == "firing"
    # A batch out of order within itself is evaluated in ts order.
    batch = [
        {"device": "pump-1", "metric": "temp", "value": 95, "ts": TS + 12_000},
        {"device": "pump-1", "metric": "temp", "value": 50, "ts": TS + 11_000},
    ]
    assert (await client.post("/api/metrics", json=batch)).status_code == 202
    assert await alerts_since(client, cursor) == [("firing", 90), ("resolved", 50), ("firing", 95)]


async def test_other_series_and_disabled_rules_are_not_evaluated(client: QuartClient) -> None:
    rule = await make_rule(client, threshold=80, enabled=False)
    cursor = await head(client)
    await feed(client, [90])
    response = await client.post("/api/metrics", json={"device": "pump-1", "metric": "rpm", "value": 900, "ts": TS})
    assert response.status_code == 202
    assert await alerts_since(client, cursor) == []
    assert (await state_of(client, rule["id"]))["state"] == "ok"


async def test_disabling_or_deleting_a_firing_rule_resolves_it_once(client: QuartClient) -> None:
    first = await make_rule(client, threshold=80)
    second = await make_rule(client, threshold=70, name="warm")
    await feed(client, [90])
    cursor = await head(client)
    await client.post(f"/api/alerts/rules/{first['id']}", json={"enabled": False})
    await client.post(f"/api/alerts/rules/{second['id']}/delete")
    body = await (await client.get(f"/api/events?since={cursor}")).get_json()
    assert "reset" not in body, body
    resolved = [(e["data"]["rule_id"], e["data"]["reason"]) for e in body["events"] if e["type"] == "alert"]
    assert resolved == [(first["id"], "disabled"), (second["id"], "deleted")]
    assert (await state_of(client, first["id"]))["state"] == "ok"


# --- two processes ------------------------------------------------------------------


async def test_two_processes_ingesting_one_series_emit_each_transition_once(
    start_server: Callable[..., AppServer],
) -> None:
    servers = [start_server(), start_server()]
    values = [70, 85, 86, 74, 73, 90, 91, 60]  # threshold 80, hysteresis 5: fire, resolve, fire, resolve
    async with httpx.AsyncClient(timeout=10) as http:
        cursor = (await http.get(servers[0].url + "/api/events")).json()["cursor"]
        created = await http.post(
            servers[0].url + "/api/alerts/rules",
            json={"device": "pump-1", "metric": "temp", "op": "above", "threshold": 80, "hysteresis": 5},
        )
        assert created.status_code == 201
        for i, value in enumerate(values):
            reading = {"device": "pump-1", "metric": "temp", "value": value, "ts": TS + i * 1000}
            # The same reading reaches both processes at once (a gateway retrying
            # through another worker): each transition must still be one event.
            answers = await asyncio.gather(*(http.post(s.url + "/api/metrics", json=reading) for s in servers))
            assert [a.status_code for a in answers] == [202, 202]

        async def alerts() -> list[tuple[str, float]] | None:
            body = (await http.get(f"{servers[1].url}/api/events?since={cursor}&topics=device/pump-1")).json()
            assert "reset" not in body, body
            metrics = [e for e in body["events"] if e["type"] == "metric"]
            if len(metrics) < 2 * len(values):
                return None
            return [(e["data"]["state"], e["data"]["value"]) for e in body["events"] if e["type"] == "alert"]

        found = await async_wait_until(alerts, timeout=5, what="all metric events")
        assert found == [("firing", 85), ("resolved", 74), ("firing", 90), ("resolved", 60)]
        state = (await http.get(servers[1].url + "/api/alerts/state")).json()["states"]
        assert [s["state"] for s in state.values()] == ["ok"]


# --- evaluation on rule writes ----------------------------------------------------------


async def test_rule_writes_evaluate_against_the_latest_value(client: QuartClient) -> None:
    await feed(client, [90])
    cursor = await head(client)
    rule = await make_rule(client, threshold=50)
    assert (await state_of(client, rule["id"]))["state"] == "firing"
    url = f"/api/alerts/rules/{rule['id']}"
    assert (await client.post(url, json={"threshold": 95})).status_code == 200
    assert (await state_of(client, rule["id"]))["state"] == "ok"
    assert (await client.post(url, json={"op": "below", "threshold": 95})).status_code == 200
    assert (await client.post(url, json={"enabled": False})).status_code == 200
    assert (await client.post(url, json={"enabled": True})).status_code == 200
    assert (await client.post(url, json={"name": "renamed"})).status_code == 200  # no change, no event
    body = await (await client.get(f"/api/events?since={cursor}")).get_json()
    alerts = [
        (e["data"]["state"], e["data"]["reason"], e["data"]["value"]) for e in body["events"] if e["type"] == "alert"
    ]
    assert alerts == [
        ("firing", "rule_changed", 90),
        ("resolved", "rule_changed", 90),
        ("firing", "rule_changed", 90),
        ("resolved", "disabled", None),
        ("firing", "rule_changed", 90),
    ]
    # The alert event follows the rule's own event of the same write.
    types = [e["type"] for e in body["events"]]
    assert types[:2] == ["alert_rule", "alert"]


async def test_a_rule_on_a_series_without_readings_stays_ok(client: QuartClient) -> None:
    rule = await make_rule(client, threshold=50, metric="rpm")
    assert (await state_of(client, rule["id"]))["state"] == "ok"

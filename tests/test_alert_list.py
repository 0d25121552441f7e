"""The firing list, the transition history, acknowledge and silence; roles and scopes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from quart import Quart

from app import create_app
from app.settings import Settings

from .receiver import Receiver
from .servers import AppServer
from .types import QuartClient
from .waiting import wait_until

TS = 1_767_225_600_000


async def post_value(client: QuartClient, value: float, device: str = "pump-1", ts: int = TS) -> None:
    answer = await client.post("/api/metrics", json={"device": device, "metric": "temp", "value": value, "ts": ts})
    assert answer.status_code == 202


async def new_rule(client: QuartClient, device: str = "pump-1", **fields: Any) -> str:
    body = {"device": device, "metric": "temp", "op": "above", "threshold": 80, **fields}
    answer = await client.post("/api/alerts/rules", json=body)
    assert answer.status_code == 201, await answer.get_data(as_text=True)
    return (await answer.get_json())["id"]  # type: ignore[no-any-return]


async def test_firing_list_history_ack_and_silence(client: QuartClient) -> None:
    hot = await new_rule(client, name="hot")
    calm = await new_rule(client, name="calm", threshold=200)
    await post_value(client, 90)
    firing = (await (await client.get("/api/alerts/firing")).get_json())["firing"]
    assert [(f["rule_id"], f["value"], f["ack"], f["silence"]) for f in firing] == [(hot, 90, None, None)]
    assert firing[0]["since"] == TS
    cursor = (await (await client.get("/api/events")).get_json())["cursor"]

    # Acknowledge: who and when, live; a rule that is not firing cannot be acknowledged.
    acked = await client.post(f"/api/alerts/rules/{hot}/ack")
    assert acked.status_code == 200 and (await acked.get_json())["ack"]["firing_since"] == TS
    assert (await client.post(f"/api/alerts/rules/{calm}/ack")).status_code == 409
    assert (await client.post("/api/alerts/rules/nope/ack")).status_code == 404
    firing = (await (await client.get("/api/alerts/firing")).get_json())["firing"]
    assert firing[0]["ack"]["at"] and "by" in firing[0]["ack"]

    # Silence for a duration: visible, live; bad durations name the field.
    for body, field in (
        ({}, "body"),
        ({"duration": "soon"}, "duration"),
        ({"duration": 0}, "duration"),
        ({"duration": "90d"}, "duration"),
        ({"until": "2020-01-01T00:00:00Z"}, "until"),
        ({"until": "tomorrow"}, "until"),
        ({"until": TS, "duration": "1h"}, "until"),
    ):
        answer = await client.post(f"/api/alerts/rules/{hot}/silence", json=body)
        assert answer.status_code == 422, body
        assert field in [d["field"] for d in (await answer.get_json())["detail"]], (body, await answer.get_json())
    silenced = await client.post(f"/api/alerts/rules/{hot}/silence", json={"duration": "2h", "reason": "maintenance"})
    assert silenced.status_code == 200
    silence = (await silenced.get_json())["silence"]
    assert silence["reason"] == "maintenance" and silence["until"] > silence["at"]
    firing = (await (await client.get("/api/alerts/firing")).get_json())["firing"]
    assert firing[0]["silence"]["until"] == silence["until"]

    # State is still tracked while silenced; the next transition clears the ack.
    await post_value(client, 10, ts=TS + 1000)
    assert (await (await client.get("/api/alerts/firing")).get_json())["firing"] == []
    await post_value(client, 95, ts=TS + 2000)
    firing = (await (await client.get("/api/alerts/firing")).get_json())["firing"]
    assert firing[0]["ack"] is None and firing[0]["silence"] is not None
    assert (await client.post(f"/api/alerts/rules/{hot}/silence/delete")).status_code == 200
    assert (await (await client.get("/api/alerts/firing")).get_json())["firing"][0]["silence"] is None

    body = await (await client.get(f"/api/events?since={cursor}")).get_json()
    kinds = [(e["type"], e["data"].get("state")) for e in body["events"] if e["type"].startswith("alert")]
    assert kinds == [
        ("alert_ack", None),
        ("alert_silence", None),
        ("alert", "resolved"),
        ("alert", "firing"),
        ("alert_silence", None),
    ]
    alerts = [e["data"] for e in body["events"] if e["type"] == "alert"]
    assert all(a["silenced"] for a in alerts)

    # History: newest first, filtered, bounded, paged.
    history = (await (await client.get("/api/alerts/history")).get_json())["transitions"]
    assert [(h["rule_id"], h["state"]) for h in history] == [(hot, "firing"), (hot, "resolved"), (hot, "firing")]
    page = await (await client.get("/api/alerts/history?limit=2")).get_json()
    assert len(page["transitions"]) == 2 and page["next"]
    rest = await (await client.get(f"/api/alerts/history?limit=2&before={page['next']}")).get_json()
    assert [h["state"] for h in rest["transitions"]] == ["firing"] and rest["next"] is None
    assert (await (await client.get(f"/api/alerts/history?rule={calm}")).get_json())["transitions"] == []
    assert (await (await client.get("/api/alerts/history?device=fan-1")).get_json())["transitions"] == []
    # from/to select by when the transition was recorded (its history id): on Redis 7.0 that
    # millisecond can follow the transition's own `at`, read earlier in the same script run.
    newest = int(history[0]["id"].split("-")[0])
    later = await (await client.get(f"/api/alerts/history?from={newest + 1}")).get_json()
    assert later["transitions"] == []
    assert (await client.get("/api/alerts/history?from=yesterday")).status_code == 400
    assert (await client.get("/api/alerts/history?limit=100000")).status_code == 400


def test_a_silenced_rule_sends_nothing_and_still_changes_state(start_server: Callable[..., AppServer]) -> None:
    server = start_server(LIVEDASH_WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8")
    with Receiver() as receiver, httpx.Client(timeout=10) as http:
        channel = http.post(server.url + "/api/alerts/channels", json={"name": "ops", "url": receiver.url}).json()
        rule = http.post(
            server.url + "/api/alerts/rules",
            json={"device": "pump-1", "metric": "temp", "op": "above", "threshold": 80, "channels": [channel["id"]]},
        ).json()
        assert (
            http.post(f"{server.url}/api/alerts/rules/{rule['id']}/silence", json={"duration": 3600}).status_code == 200
        )
        for value in (90, 10):
            assert (
                http.post(
                    server.url + "/api/metrics", json={"device": "pump-1", "metric": "temp", "value": value}
                ).status_code
                == 202
            )
        history = http.get(server.url + "/api/alerts/history").json()["transitions"]
        assert [(h["state"], h["silenced"]) for h in history] == [("resolved", True), ("firing", True)]
        # Unsilenced, the next transition is delivered; the silenced ones never were.
        assert http.post(f"{server.url}/api/alerts/rules/{rule['id']}/silence/delete").status_code == 200
        assert (
            http.post(server.url + "/api/metrics", json={"device": "pump-1", "metric": "temp", "value": 99}).status_code
            == 202
        )
        wait_until(receiver.count, timeout=10, what="the unsilenced delivery")
        assert [b["state"] for b in receiver.bodies()] == ["firing"]
        assert [
            e["ok"] for e in http.get(f"{server.url}/api/alerts/channels/{channel['id']}/log").json()["attempts"]
        ] == [True]


async def test_roles_and_scopes(make_settings: Callable[..., Settings]) -> None:
    admin_token = "admin-token-0123456789"
    app: Quart = create_app(make_settings(auth="on", admin_token=admin_token, secret_key="k" * 32))
    async with app.test_app():
        client = app.test_client()
        admin = {"Authorization": f"Bearer {admin_token}"}

        async def token(role: str, **extra: Any) -> dict[str, str]:
            answer = await client.post("/api/tokens", json={"role": role, **extra}, headers=admin)
            assert answer.status_code == 201, await answer.get_data(as_text=True)
            return {"Authorization": f"Bearer {(await answer.get_json())['token']}"}

        viewer, editor = await token("viewer"), await token("editor")
        scoped = await token("editor", scope=["device/fan-*"])
        rules = {}
        for device in ("pump-1", "fan-1"):
            answer = await client.post(
                "/api/alerts/rules",
                json={"device": device, "metric": "temp", "op": "above", "threshold": 80},
                headers=admin,
            )
            rules[device] = (await answer.get_json())["id"]
            reading = {"device": device, "metric": "temp", "value": 90, "ts": TS}
            assert (await client.post("/api/metrics", json=reading, headers=admin)).status_code == 202

        pump = rules["pump-1"]
        seen = (await (await client.get("/api/alerts/firing", headers=viewer)).get_json())["firing"]
        assert {f["rule_id"] for f in seen} == set(rules.values())
        assert (await client.post(f"/api/alerts/rules/{pump}/ack", headers=viewer)).status_code == 403
        assert (
            await client.post(f"/api/alerts/rules/{pump}/silence", json={"duration": 60}, headers=editor)
        ).status_code == 403
        assert (
            await client.post("/api/alerts/channels", json={"name": "x", "url": "https://e.example/"}, headers=editor)
        ).status_code == 403
        assert (await client.get("/api/alerts/channels", headers=viewer)).status_code == 403
        assert (await client.post(f"/api/alerts/rules/{pump}/ack", headers=editor)).status_code == 200

        # A token scoped to fan-* sees fan-1 only: in the list, the history, and cannot act on pump-1.
        mine = (await (await client.get("/api/alerts/firing", headers=scoped)).get_json())["firing"]
        assert [f["rule_id"] for f in mine] == [rules["fan-1"]]
        history = (await (await client.get("/api/alerts/history", headers=scoped)).get_json())["transitions"]
        assert {h["rule"]["device"] for h in history} == {"fan-1"}
        assert (await client.post(f"/api/alerts/rules/{pump}/ack", headers=scoped)).status_code == 404
        assert (await client.post(f"/api/alerts/rules/{rules['fan-1']}/ack", headers=scoped)).status_code == 200


async def test_alerts_page_lists_firing_rules_with_role_aware_controls(make_settings: Callable[..., Settings]) -> None:
    admin_token = "admin-token-0123456789"
    app: Quart = create_app(make_settings(auth="on", admin_token=admin_token, secret_key="k" * 32))
    async with app.test_app():
        client = app.test_client()
        admin = {"Authorization": f"Bearer {admin_token}", "Accept": "text/html"}
        answer = await client.post(
            "/api/alerts/rules",
            json={"device": "pump-1", "metric": "temp", "op": "above", "threshold": 80, "name": "hot <b>"},
            headers=admin,
        )
        rule_id = (await answer.get_json())["id"]
        reading = {"device": "pump-1", "metric": "temp", "value": 90, "ts": TS}
        assert (await client.post("/api/metrics", json=reading, headers=admin)).status_code == 202
        viewer_answer = await client.post("/api/tokens", json={"role": "viewer"}, headers=admin)
        viewer = {"Authorization": f"Bearer {(await viewer_answer.get_json())['token']}", "Accept": "text/html"}

        channel = await client.post(
            "/api/alerts/channels",
            json={"name": "ops-chat", "kind": "chat", "url": "https://chat.example.com/h"},
            headers=admin,
        )
        assert channel.status_code == 201
        html = await (await client.get("/alerts", headers=admin)).get_data(as_text=True)
        assert f'id="alert--{rule_id}"' in html and "hot &lt;b&gt;" in html and "data-live" in html
        assert "/ack" in html and "alert-silence" in html  # admins may acknowledge and silence
        assert "ops-chat" in html and "Send test" in html and "channel-create" in html  # and manage channels
        html = await (await client.get("/alerts", headers=viewer)).get_data(as_text=True)
        assert f'id="alert--{rule_id}"' in html and "Not acknowledged" in html
        assert "/ack" not in html and "alert-silence" not in html
        assert "ops-chat" not in html and "Send test" not in html
        assert (await client.post(f"/api/alerts/rules/{rule_id}/ack", headers=admin)).status_code == 200
        panel = await (await client.get("/alerts/panel", headers=viewer)).get_data(as_text=True)
        assert "Acknowledged by" in panel and "Recent transitions" in panel

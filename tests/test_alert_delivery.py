"""Notification channels and deliveries, with real servers and a real receiver on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import redis as sync_redis
from quart import Quart

from app import create_app
from app.settings import Settings

from .receiver import Receiver, signed
from .servers import AppServer, free_port
from .types import QuartClient
from .waiting import wait_until

SECRET = "s3cret-s3cret-s3cret"
ALLOW = {"LIVEDASH_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"}


def setup_rule(http: httpx.Client, url: str, hook: str, *, kind: str = "webhook") -> tuple[str, str]:
    channel = http.post(url + "/api/alerts/channels", json={"name": "ops", "kind": kind, "url": hook, "secret": SECRET})
    assert channel.status_code == 201, channel.text
    channel_id = channel.json()["id"]
    rule = http.post(
        url + "/api/alerts/rules",
        json={"device": "pump-1", "metric": "temp", "op": "above", "threshold": 80, "channels": [channel_id]},
    )
    assert rule.status_code == 201, rule.text
    return channel_id, rule.json()["id"]


def reading(http: httpx.Client, url: str, value: float) -> None:
    assert (
        http.post(url + "/api/metrics", json={"device": "pump-1", "metric": "temp", "value": value}).status_code == 202
    )


def delivery_log(http: httpx.Client, url: str, channel_id: str) -> list[dict[str, Any]]:
    answer = http.get(f"{url}/api/alerts/channels/{channel_id}/log")
    assert answer.status_code == 200
    return answer.json()["attempts"]  # type: ignore[no-any-return]


def finished(log: list[dict[str, Any]], chains: int) -> list[dict[str, Any]]:
    """The log once ``chains`` delivery chains have ended (delivered or given up), else nothing."""
    return log if len([e for e in log if e["final"]]) >= chains else []


def test_one_signed_post_per_transition_with_two_workers(start_server: Callable[..., AppServer]) -> None:
    server = start_server(workers=2, **ALLOW)
    with Receiver() as receiver, httpx.Client(timeout=10) as http:
        channel_id, rule_id = setup_rule(http, server.url, receiver.url)
        for value in (90, 95, 10, 12):  # one firing, one resolved; the others change nothing
            reading(http, server.url, value)
        wait_until(lambda: len([e for e in delivery_log(http, server.url, channel_id) if e["ok"]]) == 2, timeout=10)
        assert receiver.count() == 2
        for headers, body in receiver.requests:
            assert signed(headers, body, SECRET)
        bodies = receiver.bodies()
        assert sorted(b["state"] for b in bodies) == ["firing", "resolved"]
        assert len({b["idempotency_key"] for b in bodies}) == 2
        firing = next(b for b in bodies if b["state"] == "firing")
        assert firing["rule"]["id"] == rule_id and firing["series"] == "pump-1/temp" and firing["value"] == 90
        assert firing["idempotency_key"] == f"{rule_id}/{firing['event_id']}"
        assert firing["link"].startswith("/series/pump-1/temp?from=") and firing["transition_at"].endswith("Z")
        assert receiver.requests[0][0]["x-livedash-idempotency-key"] in {b["idempotency_key"] for b in bodies}


def test_500_twice_then_200_lands_on_the_third_attempt(start_server: Callable[..., AppServer]) -> None:
    server = start_server(LIVEDASH_WEBHOOK_BACKOFF="0.1", **ALLOW)
    with Receiver(statuses=(500, 500, 200)) as receiver, httpx.Client(timeout=10) as http:
        channel_id, _ = setup_rule(http, server.url, receiver.url)
        reading(http, server.url, 90)
        attempts = wait_until(
            lambda: finished(delivery_log(http, server.url, channel_id), 1),
            timeout=10,
            what="the delivery to finish",
        )
        assert [(e["attempt"], e["status"], e["ok"]) for e in attempts] == [
            (3, 200, True),
            (2, 500, False),
            (1, 500, False),
        ]
        assert attempts[1]["error"] == "HTTP 500"
        assert len({e["key"] for e in attempts}) == 1
        assert receiver.count() == 3
        assert len({b["idempotency_key"] for b in receiver.bodies()}) == 1


def test_receiver_down_is_logged_and_ingest_does_not_wait(start_server: Callable[..., AppServer]) -> None:
    server = start_server(LIVEDASH_WEBHOOK_BACKOFF="0.2", LIVEDASH_WEBHOOK_ATTEMPTS="3", **ALLOW)
    hook = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens there
    with httpx.Client(timeout=10) as http:
        channel_id, _ = setup_rule(http, server.url, hook)
        started = time.monotonic()
        for value in (90, 10, 90, 10, 90):
            reading(http, server.url, value)
        assert time.monotonic() - started < 2.0  # five transitions' deliveries are retrying meanwhile
        attempts = wait_until(
            lambda: finished(delivery_log(http, server.url, channel_id), 5),
            timeout=20,
            what="every chain given up",
        )
        assert len(attempts) == 15 and not any(e["ok"] for e in attempts)
        assert all(e["status"] is None and e["error"] for e in attempts)
        assert {e["attempt"] for e in attempts if e["final"]} == {3}


def test_a_delivery_held_by_a_killed_process_is_delivered_after_restart(start_server: Callable[..., AppServer]) -> None:
    env = {
        "LIVEDASH_WEBHOOK_CLAIM_IDLE": "3",
        "LIVEDASH_WEBHOOK_TIMEOUT": "1",
        "LIVEDASH_WEBHOOK_BACKOFF": "1",
        **ALLOW,
    }
    first = start_server(**env)
    with Receiver(statuses=(500, 200)) as receiver, httpx.Client(timeout=10) as http:
        channel_id, _ = setup_rule(http, first.url, receiver.url)
        reading(http, first.url, 90)
        wait_until(receiver.count, timeout=10, what="the first attempt")
        first.kill()  # during its backoff: the entry stays pending, held by a dead consumer
        seen_at_kill = receiver.count()
        second = start_server(**env)
        wait_until(lambda: any(e["ok"] for e in delivery_log(http, second.url, channel_id)), timeout=15)
        assert receiver.count() > seen_at_kill
        keys = {b["idempotency_key"] for b in receiver.bodies()}
        assert len(keys) == 1  # every attempt, before and after the restart, carries the same key
        assert all(signed(h, b, SECRET) for h, b in receiver.requests)


async def test_bad_channels_and_rule_channels_name_the_field(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    good = {"name": "ops", "url": "https://hooks.example.com/x"}
    cases = [
        ({**good, "url": "not a url"}, "url"),
        ({**good, "url": "ftp://example.com/"}, "url"),
        ({**good, "url": "http://"}, "url"),
        ({**good, "url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({**good, "url": "http://metadata.google.internal/"}, "url"),
        ({**good, "url": "http://127.0.0.1:9/"}, "url"),  # loopback: refused unless allowed
        ({**good, "url": "http://[::1]/"}, "url"),
        ({**good, "url": "http://[fe80::1]/"}, "url"),
        ({**good, "url": "http://localhost:8080/"}, "url"),
        ({**good, "kind": "pager"}, "kind"),
        ({**good, "secret": "short"}, "secret"),
        ({"url": good["url"]}, "name"),
        ({**good, "extra": 1}, "extra"),
    ]
    for body, field in cases:
        answer = await client.post("/api/alerts/channels", json=body)
        assert answer.status_code == 422, body
        assert field in [d["field"] for d in (await answer.get_json())["detail"]], (body, await answer.get_json())
    assert not sync_client.exists(key_prefix + "alerts:channels")

    rule = {"device": "pump-1", "metric": "temp", "op": "above", "threshold": 1}
    for channels in (["nope"], ["bad id!"], "x"):
        answer = await client.post("/api/alerts/rules", json={**rule, "channels": channels})
        assert answer.status_code == 422, channels
        assert (await answer.get_json())["detail"][0]["field"].startswith("channels")
    assert (await (await client.get("/api/alerts/rules")).get_json())["rules"] == []
    assert (await client.get("/api/alerts/channels/nope/log")).status_code == 404
    assert (await client.post("/api/alerts/channels/nope/test")).status_code == 404


async def test_send_test_and_chat_body(make_settings: Callable[..., Settings]) -> None:
    app: Quart = create_app(make_settings(webhook_allow_networks="127.0.0.0/8"))
    async with app.test_app():
        client = app.test_client()
        with Receiver() as receiver:
            for kind in ("webhook", "chat"):
                created = await client.post(
                    "/api/alerts/channels", json={"name": kind, "kind": kind, "url": receiver.url}
                )
                assert created.status_code == 201
                channel = await created.get_json()
                assert len(channel["secret"]) >= 32  # generated, shown this once
                listed = await (await client.get("/api/alerts/channels")).get_json()
                assert all("secret" not in c for c in listed["channels"])
                answer = await client.post(f"/api/alerts/channels/{channel['id']}/test")
                entry = await answer.get_json()
                assert answer.status_code == 200 and entry["ok"] and entry["status"] == 200 and entry["test"]
                log = await (await client.get(f"/api/alerts/channels/{channel['id']}/log")).get_json()
                assert [e["key"] for e in log["attempts"]] == [entry["key"]]
                headers, body = receiver.requests[-1]
                assert signed(headers, body, channel["secret"])
            webhook, chat = receiver.bodies()
            assert webhook["test"] is True and webhook["state"] == "firing"
            assert list(chat) == ["text"] and chat["text"].startswith("[test] [FIRING]")

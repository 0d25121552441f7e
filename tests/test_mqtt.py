"""The MQTT bridge: message → reading rules, and a real Mosquitto feeding a two-worker server."""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import httpx
import pytest

from app.ingest.mqtt import BadMessage, BrokerAddress, TopicTemplate, to_reading
from app.ops.telemetry import prepare_multiproc_dir

from .servers import AppServer
from .waiting import async_wait_until

TS = 1_790_000_000_000
TEMPLATE = TopicTemplate.parse("sensors/{device}/{metric}")


def test_number_and_json_payloads() -> None:
    reading = to_reading(TEMPLATE, "sensors/pump-1/temperature", b" 71.5 ")
    assert (reading.device, reading.metric, reading.value) == ("pump-1", "temperature", 71.5)
    reading = to_reading(
        TEMPLATE, "sensors/pump-1/rpm", b'{"value": 1480, "ts": 1790000000000, "unit": "rpm", "tags": {"line": "2"}}'
    )
    assert (reading.value, reading.ts, reading.unit, reading.tags) == (1480.0, TS, "rpm", {"line": "2"})
    assert to_reading(TEMPLATE, "sensors/a/b", b"-3e2").value == -300.0
    assert to_reading(TEMPLATE, "sensors/a/b", b'{"device": "a", "value": 1}').device == "a"


@pytest.mark.parametrize(
    ("topic", "payload", "problem"),
    [
        ("sensors/pump-1/t", b"hot", "neither a number nor JSON"),
        ("sensors/pump-1/t", b"true", "must be a number or an object"),
        ("sensors/pump-1/t", b"[1, 2]", "must be a number or an object"),
        ("sensors/pump-1/t", b'{"value": "x"}', "value"),
        ("sensors/pump-1/t", b'{"value": 1, "vaule": 2}', "vaule"),
        ("sensors/pump-1/t", b'{"device": "other", "value": 1}', "disagrees"),
        ("sensors/bad device/t", b"1", "device"),
        ("sensors/pump-1/t", b"\xff", "UTF-8"),
        ("sensors/pump-1/t/extra", b"1", "does not match"),
        ("other/pump-1/t", b"1", "does not match"),
        ("sensors/pump-1/t", b"1" * 70_000, "at most"),
    ],
)
def test_bad_messages_say_why(topic: str, payload: bytes, problem: str) -> None:
    with pytest.raises(BadMessage, match=problem):
        to_reading(TEMPLATE, topic, payload)


def test_templates_and_urls() -> None:
    assert TopicTemplate.parse("site/+/{metric}/x/{device}").subscription == "site/+/+/x/+"
    assert TopicTemplate.parse("site/+/{metric}/{device}").match("site/a/m/d") == ("d", "m")
    for bad in ("sensors/{device}", "a/{device}/{device}/{metric}", "a/#/{device}/{metric}"):
        with pytest.raises(ValueError):
            TopicTemplate.parse(bad)
    address = BrokerAddress.parse("mqtts://user:p%40ss@broker.example:8884")
    assert (address.hostname, address.port, address.username, address.password, address.tls) == (
        "broker.example",
        8884,
        "user",
        "p@ss",
        True,
    )
    assert BrokerAddress.parse("mqtt://localhost").port == 1883
    with pytest.raises(ValueError):
        BrokerAddress.parse("http://localhost")


MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883


@pytest.fixture
def mosquitto() -> None:
    try:
        with socket.create_connection((MQTT_HOST, MQTT_PORT), timeout=1):
            pass
    except OSError:
        pytest.skip(f"no MQTT broker answers on {MQTT_HOST}:{MQTT_PORT} (install and start mosquitto)")


def metric(url: str, name: str) -> float | None:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


async def test_bridge_stores_each_message_once_across_workers(
    mosquitto: None, start_server: Callable[..., AppServer], tmp_path: Path, key_prefix: str
) -> None:
    prefix = f"ldtest-{uuid.uuid4().hex[:10]}"
    prom = tmp_path / "prom"
    prepare_multiproc_dir(prom)
    server = start_server(
        workers=2,
        PROMETHEUS_MULTIPROC_DIR=str(prom),
        LIVEDASH_MQTT_URL=f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
        LIVEDASH_MQTT_TOPIC=prefix + "/{device}/{metric}",
    )
    try:
        await async_wait_until(
            lambda: _async(metric(server.url, "livedash_mqtt_connected") == 1),
            timeout=20,
            what="the MQTT bridge to connect",
        )
        async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=f"{prefix}-pub") as publisher:
            await publisher.publish(f"{prefix}/pump-1/temperature", b"71.5", qos=1)
            await publisher.publish(
                f"{prefix}/pump-1/rpm", b'{"value": 1480, "ts": 1790000000000, "unit": "rpm"}', qos=1
            )
            await publisher.publish(f"{prefix}/pump-1/temperature", b"not a number", qos=1)
            await publisher.publish(f"{prefix}/bad device/temperature", b"1", qos=1)
            await publisher.publish(f"{prefix}/pump-1/temperature", b"72.0", qos=1)

        def latest() -> dict[str, float]:
            series = httpx.get(server.url + "/api/metrics/latest", params={"device": "pump-1"}).json()["series"]
            return {s["metric"]: s["value"] for s in series}

        await async_wait_until(
            lambda: _async(latest() == {"temperature": 72.0, "rpm": 1480.0}), timeout=15, what="readings from MQTT"
        )
        await async_wait_until(
            lambda: _async(metric(server.url, 'livedash_ingest_rejected_total{source="mqtt"}') == 2),
            timeout=10,
            what="two rejected messages counted",
        )
        history = httpx.get(server.url + "/api/metrics/series", params={"device": "pump-1"}).json()["series"]
        points = {s["metric"]: [p[1] for p in s["points"]] for s in history}
        # Two workers run the bridge loop; only the lease holder subscribes, so each message is stored once.
        assert points == {"temperature": [71.5, 72.0], "rpm": [1480.0]}
        assert metric(server.url, 'livedash_readings_accepted_total{source="mqtt"}') == 3
    finally:
        server.stop()
        # Drop the bridge's persistent session from the broker (a clean session with its id).
        client_id = "livedash-" + hashlib.sha256(key_prefix.encode()).hexdigest()[:16]
        async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=client_id, clean_session=True):
            pass


async def _async(value: bool) -> bool:
    return value

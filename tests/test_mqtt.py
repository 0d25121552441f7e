"""The MQTT bridge: message → reading rules, and a real Mosquitto feeding a two-worker server."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiomqtt
import httpx
import pytest
import redis

from app.ingest.mqtt import BadMessage, BrokerAddress, TopicTemplate, to_reading
from app.ops.telemetry import prepare_multiproc_dir

from .servers import AppServer, free_port
from .waiting import async_wait_until, wait_until

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


MQTT_HOST = "127.0.0.1"
# .ci/run starts Mosquitto on 1883 when none answers there and sets this: then a missing broker fails, never skips.
REQUIRE_BROKER = os.environ.get("LIVEDASH_TEST_REQUIRE_MQTT") == "1"


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((MQTT_HOST, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def mqtt_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A broker's port: the one on 127.0.0.1:1883, else a private Mosquitto on a free port."""
    if _answers(1883):
        yield 1883
        return
    binary = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
    if binary is None:
        message = "no MQTT broker on 127.0.0.1:1883 and no mosquitto to start (apt-get install mosquitto)"
        if REQUIRE_BROKER:
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(f"listener {port} {MQTT_HOST}\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _answers(port), 10, what="a private Mosquitto")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def mosquitto(mqtt_port: int) -> int:
    return mqtt_port


def metric(url: str, name: str) -> float | None:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


async def test_bridge_stores_each_message_once_across_workers(
    mosquitto: int, start_server: Callable[..., AppServer], tmp_path: Path, key_prefix: str
) -> None:
    prefix = f"ldtest-{uuid.uuid4().hex[:10]}"
    prom = tmp_path / "prom"
    prepare_multiproc_dir(prom)
    server = start_server(
        workers=2,
        PROMETHEUS_MULTIPROC_DIR=str(prom),
        LIVEDASH_MQTT_URL=f"mqtt://{MQTT_HOST}:{mosquitto}",
        LIVEDASH_MQTT_TOPIC=prefix + "/{device}/{metric}",
    )
    try:
        await async_wait_until(
            lambda: _async(metric(server.url, "livedash_mqtt_connected") == 1),
            timeout=20,
            what="the MQTT bridge to connect",
        )
        async with aiomqtt.Client(MQTT_HOST, mosquitto, identifier=f"{prefix}-pub") as publisher:
            await publisher.publish(f"{prefix}/pump-1/temperature", b"71.5", qos=1)
            # A recent ts of its own: history keeps raw points for a while, not forever.
            recent = int(time.time() * 1000) - 60_000
            await publisher.publish(f"{prefix}/pump-1/rpm", b'{"value": 1480, "ts": %d, "unit": "rpm"}' % recent, qos=1)
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
        async with aiomqtt.Client(MQTT_HOST, mosquitto, identifier=client_id, clean_session=True):
            pass


async def _async(value: bool) -> bool:
    return value


async def test_retained_messages_are_not_news_and_the_lease_is_released(
    mosquitto: int, start_server: Callable[..., AppServer], sync_client: redis.Redis, key_prefix: str
) -> None:
    """A retained message comes again on every (re)connect: stored only with its own, newer ts.
    A stopped bridge gives its lease up, so the next process ingests at once."""
    prefix = f"ldtest-{uuid.uuid4().hex[:10]}"
    env = {"LIVEDASH_MQTT_URL": f"mqtt://{MQTT_HOST}:{mosquitto}", "LIVEDASH_MQTT_TOPIC": prefix + "/{device}/{metric}"}
    client_id = "livedash-" + hashlib.sha256(key_prefix.encode()).hexdigest()[:16]
    retained_topics = [f"{prefix}/dead-1/temperature", f"{prefix}/dead-1/rpm"]

    def history() -> dict[str, list[float]]:
        series = httpx.get(server.url + "/api/metrics/series", params={"device": "dead-1"}).json()["series"]
        return {s["metric"]: [p[1] for p in s["points"]] for s in series}

    async def publish(topic: str, payload: bytes, retain: bool = False) -> None:
        async with aiomqtt.Client(MQTT_HOST, mosquitto, identifier=f"{prefix}-pub") as publisher:
            await publisher.publish(topic, payload, qos=1, retain=retain)

    async def connected_and_caught_up(mark: float) -> None:
        # A live message published after the subscription arrives after the retained ones.
        await async_wait_until(
            lambda: _async(metric(server.url, "livedash_mqtt_connected") == 1), timeout=20, what="the bridge"
        )
        await publish(f"{prefix}/dead-1/mark", str(mark).encode())
        await async_wait_until(lambda: _async(mark in history().get("mark", [])), timeout=15, what="the live message")

    try:
        # The sensor's last words, retained by the broker; then the sensor dies.
        await publish(retained_topics[0], b"20.5", retain=True)  # no ts of its own
        await publish(retained_topics[1], b'{"value": 900, "ts": %d}' % (time.time() * 1000 - 60_000), retain=True)
        server = start_server(**env)
        await connected_and_caught_up(1.0)
        assert history() == {"rpm": [900.0], "mark": [1.0]}  # a retained message with its own ts is news once
        server.stop()
        # The bridge gave its lease up on the way out: the next process need not wait for the TTL.
        assert sync_client.get(key_prefix + "mqtt-lease") is None
        started = time.monotonic()
        server = start_server(**env)
        await connected_and_caught_up(2.0)
        resumed = time.monotonic() - started
        print(f"MQTT ingestion resumed {resumed:.1f}s after the next process was started")
        # Reconnected: the same retained messages came again and stored nothing; the dead sensor stays dead.
        assert history() == {"rpm": [900.0], "mark": [1.0, 2.0]}
        assert resumed < 8, resumed
        # A live message without a ts gets its arrival time, as documented.
        before = int(time.time() * 1000)
        await publish(retained_topics[0], b"21.0")
        await async_wait_until(lambda: _async("temperature" in history()), timeout=15, what="a live reading")
        latest = httpx.get(server.url + "/api/metrics/latest", params={"device": "dead-1", "metric": "temperature"})
        assert latest.json()["series"][0]["ts"] >= before
    finally:
        for topic in retained_topics:
            await publish(topic, b"", retain=True)  # clears the broker's retained message
        async with aiomqtt.Client(MQTT_HOST, mosquitto, identifier=client_id, clean_session=True):
            pass

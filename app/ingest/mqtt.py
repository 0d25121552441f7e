"""The MQTT bridge: sensors publish, livedash stores (``LIVEDASH_MQTT_URL``).

It subscribes to ``LIVEDASH_MQTT_TOPIC`` (``sensors/{device}/{metric}`` by
default: the placeholders become ``+`` wildcards) and turns each message into
a reading through the same model and write path as ``POST /api/metrics``:

- payload a bare number (``21.5``) → that value, server time (arrival);
- payload JSON: a number, or an object ``{value, ts?, unit?, tags?}`` (a
  ``device``/``metric`` in it must agree with the topic); without ``ts`` the
  reading gets the arrival time.

Retained messages: the broker hands the last retained message of each topic
to every new subscription, so each (re)connect of the bridge would store it
again with a fresh server time and a dead sensor would look alive. A
retained message is stored only if it carries its own ``ts`` and that is
newer than the series' latest; otherwise it is skipped (logged at debug).

A bad message is counted (``livedash_ingest_rejected_total{source="mqtt"}``)
and logged, then skipped; it never stops the bridge. A lost broker is retried
with exponential backoff.

Several workers (or machines): every process runs ``run_bridge``, but only
the holder of a Redis lease (``scripts/lease.lua``, as the demo simulator
does) connects, so each message is stored once. The holder releases the
lease when it stops (``lease_release.lua``), so after a deploy another
process takes over within ``LEASE_RETRY``, not after the lease's TTL. The bridge keeps a fixed
client id with a persistent session (``clean_session=False``) and QoS 1, so
while the lease moves to another process the broker keeps the messages for
whoever takes over. QoS 1 is at-least-once: a message the broker resends
after a failover may be stored twice (the same reading, same ``ts``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import ssl
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson
from pydantic import ValidationError
from redis.exceptions import RedisError

from app.ingest.pipeline import ingest
from app.ingest.readings import DEFAULT_MAX_FUTURE_MS, Reading, validation_context
from app.ops import telemetry
from app.services import Services
from app.storage import lua as scripts
from app.validation import validation_detail

log = logging.getLogger(__name__)

LEASE_TTL_MS = 10_000
LEASE_RENEW = 3.0
LEASE_RETRY = 2.0
LEASE_RELEASE_TIMEOUT = 2.0
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
MAX_PAYLOAD = 64 * 1024
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


class BadMessage(ValueError):
    pass


@dataclass(frozen=True)
class TopicTemplate:
    """``sensors/{device}/{metric}``: where in a topic the device and metric are."""

    levels: tuple[str, ...]

    @classmethod
    def parse(cls, template: str) -> TopicTemplate:
        levels = tuple(template.split("/"))
        for name in ("{device}", "{metric}"):
            if levels.count(name) != 1:
                raise ValueError(f"MQTT topic template {template!r} needs exactly one level {name}")
        for level in levels:
            if level not in ("{device}", "{metric}") and ("{" in level or "#" in level):
                raise ValueError(f"MQTT topic template {template!r}: bad level {level!r}")
        return cls(levels)

    @property
    def subscription(self) -> str:
        return "/".join("+" if level in ("{device}", "{metric}") else level for level in self.levels)

    def match(self, topic: str) -> tuple[str, str]:
        parts = topic.split("/")
        if len(parts) != len(self.levels):
            raise BadMessage(f"topic {topic[:100]!r} does not match {'/'.join(self.levels)!r}")
        found: dict[str, str] = {}
        for level, part in zip(self.levels, parts, strict=True):
            if level in ("{device}", "{metric}"):
                found[level] = part
            elif level != "+" and level != part:
                raise BadMessage(f"topic {topic[:100]!r} does not match {'/'.join(self.levels)!r}")
        return found["{device}"], found["{metric}"]


def to_reading(template: TopicTemplate, topic: str, payload: bytes) -> Reading:
    """One message → one validated reading, or ``BadMessage`` saying why not."""
    return parse_message(template, topic, payload)[0]


def parse_message(
    template: TopicTemplate, topic: str, payload: bytes, max_future_s: float = DEFAULT_MAX_FUTURE_MS / 1000
) -> tuple[Reading, bool]:
    """One message → its reading, and whether the payload carried its own ``ts``."""
    device, metric = template.match(topic)
    if len(payload) > MAX_PAYLOAD:
        raise BadMessage(f"payload of {len(payload)} bytes, at most {MAX_PAYLOAD}")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadMessage("payload is not UTF-8") from None
    body: dict[str, Any]
    if _NUMBER.match(text):
        body = {"value": float(text)}
    else:
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise BadMessage(f"payload is neither a number nor JSON: {text[:60]!r}") from None
        if isinstance(parsed, int | float) and not isinstance(parsed, bool):
            body = {"value": parsed}
        elif isinstance(parsed, dict):
            body = dict(parsed)
        else:
            raise BadMessage("JSON payload must be a number or an object {value, ts?, unit?, tags?}")
    for key, from_topic in (("device", device), ("metric", metric)):
        if key in body and body[key] != from_topic:
            raise BadMessage(f"payload {key} {body[key]!r} disagrees with the topic's {from_topic!r}")
        body[key] = from_topic
    own_ts = body.get("ts") not in (None, "")
    try:
        return Reading.model_validate(body, context=validation_context(max_future_s)), own_ts
    except ValidationError as exc:
        detail = "; ".join(f"{e['field']}: {e['error']}" for e in validation_detail(exc))
        raise BadMessage(detail) from None


@dataclass(frozen=True)
class BrokerAddress:
    hostname: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError("LIVEDASH_MQTT_URL must look like mqtt://[user:pass@]host[:port] (or mqtts://)")
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(
            hostname=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


class Bridge:
    def __init__(self, eng: Services, url: str, template: str, qos: int) -> None:
        self.eng = eng
        self.address = BrokerAddress.parse(url)
        self.template = TopicTemplate.parse(template)
        self.qos = qos
        self.owner = uuid.uuid4().hex
        self.lease_key = f"{eng.keys.prefix}mqtt-lease"
        # One client id per deployment (key prefix): the broker's persistent
        # session, and its queued messages, pass from one lease holder to the next.
        digest = hashlib.sha256(eng.keys.prefix.encode()).hexdigest()[:16]
        self.client_id = f"livedash-{digest}"
        self._lease = scripts.load(eng.redis, "lease")
        self._lease_release = scripts.load(eng.redis, "lease_release")

    async def hold_lease(self) -> bool:
        return bool(await self._lease(keys=[self.lease_key], args=[self.owner, LEASE_TTL_MS]))

    async def release_lease(self) -> None:
        """Give the lease up (if it is ours), so another process takes over at once."""
        try:
            async with asyncio.timeout(LEASE_RELEASE_TIMEOUT):
                if await self._lease_release(keys=[self.lease_key], args=[self.owner]):
                    log.info("MQTT bridge stopped; lease released")
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("MQTT bridge could not release its lease (it expires in %ss): %s", LEASE_TTL_MS // 1000, exc)

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            # Stopping (the app shuts down): the broker connection is closed by now.
            await self.release_lease()

    async def _run(self) -> None:
        delay = BACKOFF_START
        while True:
            try:
                if await self.hold_lease():
                    await self._serve()
                    delay = BACKOFF_START
                else:
                    await asyncio.sleep(LEASE_RETRY)
                    continue
            except aiomqtt.MqttError as exc:
                log.warning("MQTT broker %s:%s unavailable (%s); retrying in %.1fs", *self._where(), exc, delay)
            except RedisError as exc:
                log.warning("MQTT bridge: Redis unavailable (%s); retrying in %.1fs", exc, delay)
            except Exception:
                # A bug must not end the bridge for good: log it and back off.
                log.exception("MQTT bridge failed; retrying in %.1fs", delay)
            finally:
                telemetry.MQTT_CONNECTED.set(0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def _where(self) -> tuple[str, int]:
        return self.address.hostname, self.address.port

    async def _serve(self) -> None:
        a = self.address
        async with aiomqtt.Client(
            a.hostname,
            a.port,
            username=a.username,
            password=a.password,
            identifier=self.client_id,
            clean_session=False,
            tls_context=ssl.create_default_context() if a.tls else None,
            timeout=10,
        ) as client:
            await client.subscribe(self.template.subscription, qos=self.qos)
            telemetry.MQTT_CONNECTED.set(1)
            log.info("MQTT bridge connected to %s:%s, subscribed to %s", *self._where(), self.template.subscription)
            consume = asyncio.create_task(self._consume(client))
            renew = asyncio.create_task(self._renew())
            try:
                done, _ = await asyncio.wait({consume, renew}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                consume.cancel()
                renew.cancel()
                await asyncio.gather(consume, renew, return_exceptions=True)
            for task in done:
                task.result()  # an MqttError from the consumer goes to run()'s backoff

    async def _renew(self) -> None:
        """Returns when another process holds the lease (we were too slow to renew)."""
        while True:
            await asyncio.sleep(LEASE_RENEW)
            if not await self.hold_lease():
                log.warning("MQTT bridge lost its lease; disconnecting")
                return

    async def _consume(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            await self.handle(message.topic.value, payload, retained=bool(message.retain))

    async def handle(self, topic: str, payload: bytes, retained: bool = False) -> bool:
        """Store one message's reading; False if it is bad (counted and logged) or a stale retained one."""
        try:
            reading, own_ts = parse_message(self.template, topic, payload, self.eng.settings.max_future)
        except BadMessage as exc:
            telemetry.INGEST_REJECTED.labels("mqtt").inc()
            log.warning("MQTT message on %r refused: %s", topic[:100], exc)
            return False
        try:
            if retained and not await self._retained_is_news(reading, own_ts):
                log.debug("MQTT retained message on %r skipped: no newer ts of its own", topic[:100])
                return False
            await ingest(self.eng, [reading], source="mqtt")
        except RedisError as exc:
            # At QoS 1 the broker has already handed the message over; it is lost.
            log.warning("MQTT message on %r not stored, Redis unavailable: %s", topic[:100], exc)
            return False
        return True

    async def _retained_is_news(self, reading: Reading, own_ts: bool) -> bool:
        """A retained message is a new reading only with its own ts, newer than the series' latest."""
        if not own_ts:
            return False
        latest = await self.eng.redis.hget(self.eng.keys.latest_ts, reading.series)
        return latest is None or reading.ts > int(latest)


async def run_bridge(eng: Services, url: str, template: str, qos: int) -> None:
    """The background task: a misconfigured bridge logs why and stays off; the app runs on."""
    try:
        bridge = Bridge(eng, url, template, qos)
    except ValueError as exc:
        log.error("MQTT bridge off: %s", exc)
        return
    await bridge.run()

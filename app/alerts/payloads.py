"""What a channel receives for one transition, and its signature.

The outbox entry carries the ``alert`` event's data (as the Lua script wrote
it), the event id and the idempotency key (``<rule id>/<event id>``: one per
transition, the same on every attempt and after a takeover, so a receiver
can drop the duplicate an at-least-once delivery cannot rule out).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson

LINK_BEFORE_MS = 3_600_000  # the series page from an hour before the transition
LINK_AFTER_MS = 900_000  # to a quarter of an hour after


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def link(public_url: str, rule: dict[str, Any], at: int) -> str:
    device, metric = rule["device"], rule.get("metric")
    window = urlencode({"from": iso(at - LINK_BEFORE_MS), "to": iso(at + LINK_AFTER_MS)})
    path = f"/series/{quote(device)}/{quote(metric)}" if metric else f"/?device={quote(device)}"
    sep = "&" if "?" in path else "?"
    return f"{public_url.rstrip('/')}{path}{sep}{window}"


def describe(rule: dict[str, Any]) -> str:
    if rule.get("kind") == "no_data":
        return f"no reading for {rule.get('no_data_seconds')} s"
    return f"{rule.get('op')} {rule.get('threshold'):g}"


def webhook_body(data: dict[str, Any], key: str, event_id: str, public_url: str) -> dict[str, Any]:
    rule = data["rule"]
    at = int(data.get("at") or data.get("ts") or 0)
    return {
        "idempotency_key": key,
        "event_id": event_id,
        "state": data["state"],
        "reason": data.get("reason"),
        "rule": {k: rule.get(k) for k in ("id", "name", "kind", "op", "threshold", "hysteresis", "no_data_seconds")},
        "series": rule.get("series"),
        "device": rule["device"],
        "metric": rule.get("metric"),
        "tags": rule.get("tags") or {},
        "value": data.get("value"),
        "reading_ts": data.get("ts"),
        "transition_at": iso(at),
        "transition_at_ms": at,
        "link": link(public_url, rule, at),
        "test": bool(data.get("test")),
    }


def chat_body(data: dict[str, Any], public_url: str) -> dict[str, Any]:
    rule = data["rule"]
    at = int(data.get("at") or data.get("ts") or 0)
    state = "FIRING" if data["state"] == "firing" else "RESOLVED"
    name = rule.get("name") or describe(rule)
    value = data.get("value")
    shown = "" if value is None else f", value {value:g}"
    prefix = "[test] " if data.get("test") else ""
    where = f"{rule.get('series')} ({describe(rule)}{shown})"
    text = f"{prefix}[{state}] {name}: {where} at {iso(at)} {link(public_url, rule, at)}"
    return {"text": text}


def render(
    channel: dict[str, Any], data: dict[str, Any], key: str, event_id: str, public_url: str
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt at this channel."""
    if channel.get("kind") == "chat":
        body = orjson.dumps(chat_body(data, public_url))
    else:
        body = orjson.dumps(webhook_body(data, key, event_id, public_url))
    signature = hmac.new(str(channel["secret"]).encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "livedash-alerts",
        "X-Livedash-Signature": f"sha256={signature}",
        "X-Livedash-Idempotency-Key": key,
        "X-Livedash-Event": event_id,
    }
    return body, headers

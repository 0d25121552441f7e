"""What every dashboard page shares: the cursor, alert rules by series, page settings.

The cursor is read *before* any snapshot, so everything the snapshots show is
at least that new: the page streams from it, and what the stream replays is
applied idempotently (points by ts, documents by version), never missed.
"""

from __future__ import annotations

from typing import Any

from app.services import Services


def rules_by_series(rules: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for rule in rules:
        out.setdefault(rule.get("series") or f"{rule['device']}/{rule['metric']}", []).append(rule)
    return out


def firing(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rules if r.get("enabled", True) and (r.get("state") or {}).get("state") == "firing"]


def page_settings(svc: Services) -> dict[str, Any]:
    """Timings the page's JavaScript paces itself by (data attributes on <body>)."""
    s = svc.settings
    return {
        "keepalive_ms": int(s.keepalive_interval * 1000),
        "heartbeat_ms": int(s.presence_heartbeat_interval * 1000),
        # A long poll may not ask for more than the server allows.
        "poll_wait_s": min(20.0, s.long_poll_max_wait),
        # A tile looks stale after this many of its usual intervals without a reading.
        "stale_factor": s.stale_factor,
    }

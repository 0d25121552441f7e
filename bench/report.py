"""The tables ``bench.run`` prints (and ``bench/README.md`` shows)."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(title: str, columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = ["scenario", "peer"] + [c[0] for c in columns]
    body = []
    for row in rows:
        first = [row["label"], row["peer"]]
        if "unavailable" in row or "error" in row:
            note = row.get("unavailable") or row.get("error")
            body.append(first + [f"n/a: {note}"[:60]] + [""] * (len(columns) - 1))
        else:
            body.append(first + [_fmt(row.get(key)) for _, key in columns])
    lines = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    lines += [f"| {' | '.join(r)} |" for r in body]
    return f"\n### {title}\n\n" + "\n".join(lines) + "\n"


FANOUT = [
    ("delivered %", "delivered_pct"),
    ("conflated", "conflated"),
    ("p50 ms", "lat_p50_ms"),
    ("p99 ms", "lat_p99_ms"),
    ("max ms", "lat_max_ms"),
    ("POST p99 ms", "post_p99_ms"),
    ("server CPU %", "server_cpu_pct"),
    ("µs CPU/event", "us_cpu_per_event"),
    ("events/CPU-s", "events_per_cpu_s"),
    ("redis µs/event", "redis_us_per_event"),
    ("KiB/stream", "rss_kib_per_stream"),
    ("loadgen CPU %", "loadgen_cpu_pct"),
    ("server CPU wait %", "server_wait_pct"),
    ("loadgen CPU wait %", "loadgen_wait_pct"),
    ("gen-2 GCs", "gc2_count"),
    ("GC s", "gc_pause_s"),
    ("longest GC ms", "gc_max"),
    ("longest loop lag ms", "lag_max"),
]
INGEST = [
    ("POSTs/s", "posts_per_s"),
    ("readings/s", "readings_per_s"),
    ("POST p50 ms", "post_p50_ms"),
    ("POST p99 ms", "post_p99_ms"),
    ("server CPU %", "server_cpu_pct"),
    ("µs CPU/reading", "us_cpu_per_reading"),
    ("redis µs/reading", "redis_us_per_reading"),
    ("loadgen CPU %", "loadgen_cpu_pct"),
]
IDLE = [
    ("open", "open_streams"),
    ("RSS before MiB", "rss_before_mib"),
    ("RSS open MiB", "rss_open_mib"),
    ("KiB/stream", "rss_kib_per_stream"),
    ("idle CPU %", "idle_cpu_pct"),
]

OPEN = [
    ("seconds to open all", "open_s"),
    ("opens/s", "opens_per_s"),
    ("errors", "errors"),
    ("server CPU s", "server_cpu_s"),
    ("/healthz p99 ms", "healthz_p99_ms"),
    ("POST p99 ms", "post_p99_ms"),
    ("probes failed", "probe_failed"),
]
RESTART = [
    ("old exited s", "old_exited_s"),
    ("new listening s", "new_listening_s"),
    ("all streaming again s", "all_back_s"),
    ("errors", "errors"),
    ("/healthz p99 ms", "healthz_p99_ms"),
    ("POST p99 ms", "post_p99_ms"),
    ("probes failed", "probe_failed"),
]


def render(rows: list[dict[str, Any]]) -> str:
    def pick(kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        chosen = [r for r in rows if r["scenario"] in kinds]
        return sorted(chosen, key=lambda r: (r["workers"], r["scenario"], r["streams"], r["rate"], r["batch"]))

    return (
        _table("Fan-out", FANOUT, pick(("fanout",)))
        + _table("Ingest", INGEST, pick(("ingest-single", "ingest-batch")))
        + _table("Idle streams", IDLE, pick(("idle",)))
        + _table("Stream-open storm (fresh server, all at once)", OPEN, pick(("open",)))
        + _table(
            "Deploy storm (SIGTERM to the process group, new server, clients come back)", RESTART, pick(("restart",))
        )
    )

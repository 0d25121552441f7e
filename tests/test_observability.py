"""Request ids, log lines (text and JSON, stream lifecycle) and Prometheus metrics across workers."""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.ops.logs import JsonFormatter, RequestIdFilter, new_request_id
from app.ops.telemetry import prepare_multiproc_dir

from .servers import AppServer
from .sse_client import open_stream
from .types import QuartClient
from .waiting import wait_until

READING = {"device": "obs-1", "metric": "m", "value": 1.0}
TS = 1_790_000_000_000


async def test_request_id_is_honoured_or_made(client: QuartClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "lb-1234.abc"})
    assert response.headers["X-Request-ID"] == "lb-1234.abc"
    made = (await client.get("/healthz")).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    # A forged id (log injection, absurd length) is replaced, not echoed.
    for bad in ("x\nlevel=error", "a" * 500, "spa ce"):
        assert new_request_id(bad) != bad
    # Errors carry it too.
    missing = await client.get("/api/nope", headers={"X-Request-ID": "rid-404"})
    assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "rid-404"


async def test_one_access_line_per_request(client: QuartClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="livedash.access"):
        await client.post("/api/metrics", json={"device": "obs-1"}, headers={"X-Request-ID": "rid-422"})
    lines = [r for r in caplog.records if r.name == "livedash.access"]
    assert len(lines) == 1
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert fields["route"] == "/api/metrics" and fields["status"] == 422 and fields["method"] == "POST"
    assert lines[0].request_id == "rid-422"  # type: ignore[attr-defined]


def test_json_formatter() -> None:
    record = logging.LogRecord("livedash.stream", logging.INFO, __file__, 1, "stream close", None, None)
    record.fields = {"reason": "client-gone", "bytes": 10}
    RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "stream close" and line["reason"] == "client-gone" and line["bytes"] == 10
    assert line["level"] == "info" and line["logger"] == "livedash.stream" and "request_id" in line
    assert line["ts"].endswith("Z")


def json_lines(path: Path) -> list[dict[str, object]]:
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            out.append(json.loads(raw))
    return out


async def test_stream_lifecycle_lines_in_json(start_server: Callable[..., AppServer]) -> None:
    server = start_server(LIVEDASH_LOG_FORMAT="json")
    assert server.log_path is not None
    async with open_stream(server.url, headers={"X-Request-ID": "tail-1"}) as stream:
        ready = await stream.next()
        assert ready.event == "ready"
        cursor = ready.id
    async with open_stream(server.url, headers={"X-Request-ID": "tail-2", "Last-Event-ID": cursor}) as stream:
        assert (await stream.next()).event == "ready"

    def lifecycle() -> list[tuple[object, object, object]]:
        return [
            (line["msg"], line["request_id"], line.get("reason"))
            for line in json_lines(server.log_path)  # type: ignore[arg-type]
            if line.get("logger") == "livedash.stream"
        ]

    expected = [
        ("stream open", "tail-1", None),
        ("stream close", "tail-1", "client-gone"),
        ("stream resume", "tail-2", None),
        ("stream close", "tail-2", "client-gone"),
    ]

    # The server notices a client has gone at its next write (a keep-alive at the latest), which
    # may come after the second stream opened: order holds per stream, not across the two.
    def per_stream() -> dict[object, list[tuple[object, object, object]]]:
        grouped: dict[object, list[tuple[object, object, object]]] = {}
        for line in lifecycle():
            grouped.setdefault(line[1], []).append(line)
        return grouped

    wait_until(lambda: sorted(lifecycle(), key=repr) == sorted(expected, key=repr), timeout=10, what=f"{expected}")
    assert per_stream() == {"tail-1": expected[:2], "tail-2": expected[2:]}
    access = [line for line in json_lines(server.log_path) if line.get("logger") == "livedash.access"]
    assert any(line["route"] == "/api/stream" and line["request_id"] == "tail-1" for line in access)


async def test_a_server_tunes_its_garbage_collector(start_server: Callable[..., AppServer]) -> None:
    server = start_server(LIVEDASH_LOG_FORMAT="json", LIVEDASH_GC_THRESHOLD="[5000,10,10]")
    assert server.log_path is not None

    def tuned() -> list[dict[str, object]]:
        return [line for line in json_lines(server.log_path) if line.get("msg") == "gc tuned"]  # type: ignore[arg-type]

    wait_until(lambda: len(tuned()) == 1, timeout=10, what="the gc line")
    line = tuned()[0]
    assert line["threshold"] == [5000, 10, 10]
    frozen = line["frozen"]
    assert isinstance(frozen, int) and frozen > 10_000, "the start-up objects (modules, schemas) are frozen"


def metric_value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


async def test_metrics_add_up_across_two_workers(start_server: Callable[..., AppServer], tmp_path: Path) -> None:
    prom = tmp_path / "prom"
    prepare_multiproc_dir(prom)
    server = start_server(workers=2, PROMETHEUS_MULTIPROC_DIR=str(prom))
    assert len(server.worker_pids()) >= 2
    posts = 12
    for i in range(posts):
        # A fresh connection each time, so the two workers share the work.
        response = httpx.post(server.url + "/api/metrics", json={**READING, "value": i}, timeout=10)
        assert response.status_code == 202
    bad = httpx.post(server.url + "/api/metrics", json={"device": "obs-1"}, timeout=10)
    assert bad.status_code == 422
    # Both workers write their own files; every scrape, whichever worker answers, sums them.
    assert len(list(prom.glob("counter_*.db"))) >= 2
    accepted = 'livedash_readings_accepted_total{source="http"}'
    requests = 'livedash_http_requests_total{method="POST",route="/api/metrics",status="202"}'
    for _ in range(6):
        text = httpx.get(server.url + "/metrics", timeout=10).text
        assert metric_value(text, accepted) == posts, text
        assert metric_value(text, requests) == posts
        assert metric_value(text, 'livedash_ingest_rejected_total{source="http"}') == 1
        assert (metric_value(text, "livedash_events_published_total") or 0) >= posts
        assert metric_value(text, "livedash_redis_ping_seconds_count") is not None

    # Open streams are a live sum over workers.
    async with open_stream(server.url) as one, open_stream(server.url) as two, open_stream(server.url) as three:
        for stream in (one, two, three):
            assert (await stream.next()).event == "ready"
        wait_until(
            lambda: metric_value(httpx.get(server.url + "/metrics").text, "livedash_streams_open") == 3,
            timeout=10,
            what="livedash_streams_open 3",
        )
    wait_until(
        lambda: metric_value(httpx.get(server.url + "/metrics").text, "livedash_streams_open") == 0,
        timeout=10,
        what="livedash_streams_open 0",
    )
    text = httpx.get(server.url + "/metrics").text
    assert (metric_value(text, 'livedash_streams_closed_total{reason="client-gone"}') or 0) >= 3


async def test_a_dropped_stream_logs_slow_consumer(start_server: Callable[..., AppServer]) -> None:
    server = start_server(LIVEDASH_STREAM_QUEUE_SIZE="8", LIVEDASH_LOG_FORMAT="json")
    assert server.log_path is not None
    # A client that sends its request, then never reads a byte.
    stuck = socket.create_connection(("127.0.0.1", server.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /api/stream HTTP/1.1\r\nHost: x\r\nX-Request-ID: stuck-1\r\n\r\n")
    try:
        tags = {f"k{i}": "x" * 100 for i in range(16)}  # ~2 KiB per event: fills the socket buffers fast
        for round_ in range(20):
            batch = [
                {"device": "d", "metric": "m", "value": i, "ts": TS + round_ * 1000 + i, "tags": tags}
                for i in range(500)
            ]
            assert httpx.post(server.url + "/api/metrics", json=batch, timeout=30).status_code == 202
            if metric_value(httpx.get(server.url + "/metrics").text, "livedash_streams_dropped_total"):
                break

        def closed() -> list[dict[str, object]]:
            return [
                line
                for line in json_lines(server.log_path)  # type: ignore[arg-type]
                if line.get("msg") == "stream close" and line.get("request_id") == "stuck-1"
            ]

        lines = wait_until(closed, timeout=15, what="the stuck stream's close line")
        assert lines[0]["reason"] == "slow-consumer" and lines[0]["level"] == "warning"
    finally:
        stuck.close()

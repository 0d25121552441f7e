"""``livedash simulate`` and ``livedash tail`` against real servers, every wait bounded."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.cli.tail import describe, parse_sse

from .servers import ROOT, AppServer
from .waiting import wait_until

TS = 1_790_000_000_000


def livedash(*args: str, stdout: Path, stderr: Path) -> subprocess.Popen[bytes]:
    # The child keeps its own copies of the descriptors; ours close at once.
    with stdout.open("wb") as out, stderr.open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=ROOT, stdout=out, stderr=err)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_parse_sse_and_describe() -> None:
    lines = iter([": keep-alive", "id: 1-0", "event: metric", 'data: {"a":', "data: 1}", "", "retry: 500", ""])
    events = list(parse_sse(lines))
    assert [(e.id, e.event, e.data) for e in events] == [("1-0", "metric", '{"a":\n1}'), (None, "message", "")]
    assert events[1].retry == 500
    line = describe(
        {
            "id": "5-0",
            "type": "metric",
            "topic": "device/p",
            "ts": TS,
            "data": {"device": "p", "metric": "t", "value": 1.5, "unit": "°C", "ts": TS},
        }
    )
    assert "p/t = 1.5 °C" in line and "[5-0]" in line and "metric" in line


def test_simulate_posts_the_demo_signals(
    server: AppServer, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    proc = livedash(
        "simulate",
        "--url",
        server.url,
        "--count",
        "2",
        "--interval",
        "0.2",
        "--seed",
        "1",
        stdout=tmp_path / "out",
        stderr=tmp_path / "err",
    )
    procs.append(proc)
    assert proc.wait(30) == 0, (tmp_path / "err").read_text()
    series = httpx.get(server.url + "/api/metrics/latest").json()["series"]
    assert {(s["device"], s["metric"]) for s in series} == {
        (d, m) for d in ("pump-1", "pump-2", "fan-3") for m in ("temperature", "rpm", "vibration")
    }
    history = httpx.get(server.url + "/api/metrics/series", params={"device": "pump-1", "metric": "rpm"}).json()
    assert len(history["series"][0]["points"]) == 2


def test_simulate_stops_on_a_client_error(
    server: AppServer, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    proc = livedash(
        "simulate", "--url", server.url + "/nowhere", "--count", "1", stdout=tmp_path / "out", stderr=tmp_path / "err"
    )
    procs.append(proc)
    assert proc.wait(30) == 2
    assert "404" in (tmp_path / "err").read_text()


def post(url: str, value: float) -> None:
    reading = {"device": "tail-1", "metric": "m", "value": value, "ts": TS + int(value)}
    assert httpx.post(url + "/api/metrics", json=reading, timeout=10).status_code == 202


def test_tail_follows_and_resumes_after_a_restart(
    server_env: dict[str, str],
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
    start_server: Callable[..., AppServer],
) -> None:
    first = AppServer(server_env, log_path=tmp_path / "first.log").start()
    port = first.port
    other = start_server()  # shares the Redis: takes a write while the first is down
    out, err = tmp_path / "out", tmp_path / "err"
    proc = livedash("tail", "--url", first.url, "--topics", "device/tail-*", "--count", "3", stdout=out, stderr=err)
    procs.append(proc)
    restarted: AppServer | None = None
    try:
        wait_until(lambda: "connected" in err.read_text(), timeout=15, what="tail to connect")
        post(first.url, 1)
        wait_until(lambda: "tail-1/m = 1.0" in out.read_text(), timeout=10, what="the first event")
        first.stop()  # a deploy: the stream ends with `bye`
        post(other.url, 2)  # written while tail is disconnected
        restarted = AppServer(server_env, log_path=tmp_path / "restarted.log")
        restarted.port = port
        restarted.start()
        wait_until(lambda: "tail-1/m = 2.0" in out.read_text(), timeout=20, what="the missed event, replayed")
        post(restarted.url, 3)
        assert proc.wait(20) == 0
    finally:
        first.stop()
        if restarted is not None:
            restarted.stop()
    lines = out.read_text().splitlines()
    assert [line.split(" = ")[1].split()[0] for line in lines] == ["1.0", "2.0", "3.0"], lines
    assert "resuming after" in err.read_text()

"""What the console says is what happens: the run hint works, tail and token list read cleanly,
and the README's line-protocol example is accepted as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from .servers import ROOT, AppServer, free_port
from .test_stream import TS, post_batch
from .waiting import wait_until


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDASH_") and k not in ("REDIS_URL", "PORT")}
    return {**env, **extra}


def test_tail_prints_events_not_http_client_logs(server: AppServer) -> None:
    first = post_batch(server.url, [{"device": "pump-1", "metric": "t", "value": 1, "ts": TS}])
    post_batch(server.url, [{"device": "pump-1", "metric": "t", "value": 2, "ts": TS + 1}])
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "tail", "--url", server.url, "--last-event-id", first, "--count", "1"],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "pump-1" in done.stdout
    assert "HTTP Request" not in done.stderr + done.stdout
    assert "INFO" not in done.stderr


def test_token_list_shows_times_people_read(redis_url: str, key_prefix: str) -> None:
    env = cli_env(REDIS_URL=redis_url, LIVEDASH_KEY_PREFIX=key_prefix)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "token", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("create", "--role", "viewer", "--name", "expiring", "--expires-in", "3600")
    cli("create", "--role", "editor", "--name", "forever")
    listing = cli("list")
    rows = {line.split()[2]: line for line in listing.splitlines()[1:]}
    assert re.search(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\s+\d{4}-\d\d-\d\d \d\d:\d\d\b", rows["expiring"]), listing
    assert re.search(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\s+never\b", rows["forever"]), listing
    assert not re.search(r"\b\d{13}\b", listing), "no raw epoch milliseconds"


def test_the_run_hint_works_with_auth_on(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--no-demo", "--port", str(port), "--data-dir", str(tmp_path / "d")],
        cwd=ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    # Read the console in a thread: the test waits on what it has printed, with a deadline.
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("/login?token=" in line for line in lines), 30, what="the login link")
        hint = next(line for line in lines if "curl -N" in line)
        token = next(line for line in lines if "/login?token=" in line).split("token=")[1].strip()
        command = re.search(r"curl (.*/api/stream)", hint)
        assert command is not None and "Authorization: Bearer $TOKEN" in command.group(1), hint
        url = command.group(1).split()[-1]
        wait_until(lambda: _ready(f"http://127.0.0.1:{port}"), 30, what="the server")
        with httpx.stream("GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as response:
            assert response.status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        reader.join(10)
        proc.stdout.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_readme_line_protocol_example(start_server: Callable[..., AppServer]) -> None:
    server = start_server()
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"`(cpu,device=a\s+usage_idle=97)`\s+→\s+reading\s+`a`\s+/\s+`cpu.usage_idle`", readme)
    assert match is not None, "the README's example"
    line = " ".join(match.group(1).split())
    response = httpx.post(server.url + "/api/write", content=line)
    assert response.status_code == 204, response.text
    latest = httpx.get(server.url + "/api/metrics/latest", params={"device": "a"}).json()["series"]
    assert [(s["metric"], s["value"]) for s in latest] == [("cpu.usage_idle", 97.0)]


def test_a_malformed_setting_is_one_line_and_status_2(tmp_path: Path) -> None:
    for command in (["run", "--no-demo", "--data-dir", str(tmp_path)], ["serve"]):
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", *command],
            cwd=ROOT,
            env=cli_env(PORT="eighty", LIVEDASH_AUTH="off"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.strip().count("\n") == 0 and "PORT" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr

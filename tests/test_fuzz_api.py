"""Hostile input: fuzz every operation in /openapi.json with schemathesis; nothing may answer 5xx.

Runs schemathesis's CLI against a real server (auth off, long polls capped at
1 s so no generated `wait` holds the run up). The SSE stream is left out: it
never ends by design, and its framing is fuzzed in test_sse_framing.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .servers import AppServer

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.skipif(not SCHEMATHESIS.exists() and shutil.which("schemathesis") is None, reason="schemathesis missing")
def test_no_generated_request_gets_a_server_error(start_server: Callable[..., AppServer]) -> None:
    server = start_server(LIVEDASH_LONG_POLL_MAX_WAIT="1")
    command = [
        str(SCHEMATHESIS if SCHEMATHESIS.exists() else shutil.which("schemathesis")),
        "run",
        server.url + "/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "20",
        "--exclude-path",
        "/api/stream",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary
    assert " passed" in summary and "generated" in summary, summary

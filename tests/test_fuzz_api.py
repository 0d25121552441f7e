"""The API description and the API agree: schemathesis with every check against /openapi.json.

A real server (authentication on, the bootstrap admin token on every request,
so protected routes are exercised; long polls capped at 1 s; a keep-alive of
1 s so a stream's first events come at once) and schemathesis's CLI with
``--checks all``: no server error, documented status codes and content
types, responses that match their schemas (the stream's events too),
schema-valid requests accepted and schema-violating ones refused, deleted
documents gone, authentication not ignored, unsupported methods answered 405.
Every phase: coverage (boundary values of every parameter and field),
fuzzing, and stateful sequences following the links schemathesis infers.
``tests/schemathesis.toml`` lists, with reasons, the few refusals JSON Schema
cannot express (a field compared with another, with what is stored, or with
the clock). Bounded: a fixed seed and few examples per operation (the
coverage phase adds each parameter's boundary values): about 3,000 requests,
some 40 s on an idle machine, more on a loaded one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .servers import ROOT, AppServer

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = ROOT / "tests" / "schemathesis.toml"
ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdef"
EXAMPLES = 5


def schemathesis_command() -> str | None:
    return str(SCHEMATHESIS) if SCHEMATHESIS.exists() else shutil.which("schemathesis")


@pytest.mark.timeout(240)
@pytest.mark.skipif(schemathesis_command() is None, reason="schemathesis missing")
def test_the_api_matches_its_description(start_server: Callable[..., AppServer], tmp_path: Path) -> None:
    server = start_server(
        LIVEDASH_AUTH="on",
        SECRET_KEY="fuzz-secret-key-0123456789abcdef0123456789",
        LIVEDASH_ADMIN_TOKEN=ADMIN_TOKEN,
        LIVEDASH_LONG_POLL_MAX_WAIT="0.2",
        # The fuzzer is one client doing everything: no write rate, and the ignored-auth check's many bad
        # tokens must keep getting 401 (past the failure limit they get 429, which is right, but not that check).
        LIVEDASH_WRITE_RATE_LIMIT="1000000",
        LIVEDASH_AUTH_FAILURE_LIMIT="1000000",
    )
    command = [
        str(schemathesis_command()),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        server.url + "/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        # One worker: hypothesis's lambda-source cache is not thread-safe (a flaky internal error with more).
        "--workers",
        "1",
        "--seed",
        "20261202",
        "--request-timeout",
        "10",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, timeout=200, check=False, cwd=tmp_path, env=env)
    took = time.monotonic() - started
    # What went wrong (the FAILURES and ERRORS sections), then the summary.
    found = re.search(r"={5,} (?:ERRORS|FAILURES) ={5,}.*?(?=={5,} WARNINGS|$)", run.stdout, re.S)
    summary = (found.group(0)[:12000] if found else "") + run.stdout[-3000:] + run.stderr[-2000:]
    cases = re.search(r"(\d+) generated", run.stdout)
    assert cases is not None, summary
    print(f"schemathesis: {cases.group(1)} cases in {took:.0f} s")  # shown with -s; also in the failure text
    assert run.returncode == 0, f"{cases.group(1)} cases in {took:.0f} s\n{summary}"
    assert "No issues found" in run.stdout or " passed" in run.stdout, summary

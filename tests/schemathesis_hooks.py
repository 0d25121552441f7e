"""Schemathesis hooks for tests/test_fuzz_api.py (loaded through SCHEMATHESIS_HOOKS).

One known server problem is kept out of the generated data until it is fixed,
so the run checks everything else: a reading dated far in the future (the API
accepts sensor times up to 2200) makes every later history read (the newest
points of a series: GET /api/metrics/series without from, the dashboard, the
series page) walk the raw chunks one by one from that time back to now, which
takes minutes and gigabytes (app/series.py, Series.history). Readings are kept
within a day of now here (and line protocol without timestamps); everything
else about them is still generated.
"""

from __future__ import annotations

import re
import time
from typing import Any

import schemathesis

from app.validation import parse_ts

HORIZON_MS = 24 * 3600 * 1000


def _too_far_ahead(reading: Any) -> bool:
    if not isinstance(reading, dict) or reading.get("ts") in (None, ""):
        return False
    try:
        ts = parse_ts(reading["ts"])
    except (ValueError, TypeError):
        return False  # not a time: the server refuses it, which is what the fuzzer checks
    return ts > time.time() * 1000 + HORIZON_MS


def _timed_lines(body: Any) -> bool:
    """Line protocol with a timestamp on some line (they may be far ahead; without one: server time)."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    return isinstance(text, str) and any(re.search(r"\s-?\d+\s*$", line) for line in text.splitlines())


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> bool:
    path = case.operation.path
    if path == "/api/metrics":
        readings = case.body if isinstance(case.body, list) else [case.body]
        return not any(_too_far_ahead(reading) for reading in readings)
    if path.endswith("/write"):  # /api/write and any other line-protocol door
        return not _timed_lines(case.body)
    return True

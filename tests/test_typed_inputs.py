"""Cursors and times as people type them.

``since=0`` (and ``Last-Event-ID: 0``) means "from the start of the kept log",
like ``0-0``, never a reset, even once the log has been trimmed. Sensor times
are RFC 3339 as the RFC allows it (lowercase ``t``/``z``, a space for ``T``,
any number of fraction digits, a leap second), not only what Python's
``fromisoformat`` reads.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from app.validation import parse_ts

from .servers import AppServer
from .sse_client import open_stream, payload
from .test_stream import TS, post_batch

NOV22 = 1_795_327_200_000  # 2026-11-22T06:00:00Z


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-11-22T06:00:00Z", NOV22),
        ("2026-11-22t06:00:00z", NOV22),
        ("2026-11-22T06:00:00z", NOV22),
        ("2026-11-22t06:00:00Z", NOV22),
        ("2026-11-22 06:00:00Z", NOV22),
        ("2026-11-22T06:00:00.123456789Z", NOV22 + 123),
        ("2026-11-22T06:00:00.5z", NOV22 + 500),
        ("2026-11-22T07:30:00+01:30", NOV22),
        ("2026-11-22T06:00:00-00:00", NOV22),
        ("2026-11-22t00:00:00-06:00", NOV22),
        ("2016-12-31T23:59:60Z", 1_483_228_800_000),  # a real leap second: the instant after :59
        ("  2026-11-22T06:00:00Z ", NOV22),
        (str(NOV22), NOV22),
    ],
)
def test_rfc3339_as_the_rfc_allows(text: str, ms: int) -> None:
    assert parse_ts(text) == ms


@pytest.mark.parametrize(
    "text",
    ["2026-11-22T06:00:00", "2026-02-30T06:00:00Z", "2026-11-22T24:00:00Z", "2026-11-22T06:00:00+24:00", "yesterday"],
)
def test_what_is_not_a_time_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ts(text)


def test_lowercase_rfc3339_over_http(server: AppServer) -> None:
    reading = {"device": "typed", "metric": "m", "value": 1, "ts": "2026-11-22t06:00:00.250z"}
    assert httpx.post(server.url + "/api/metrics", json=reading).status_code == 202
    latest = httpx.get(server.url + "/api/metrics/latest", params={"device": "typed"}).json()["series"]
    assert [r["ts"] for r in latest] == [NOV22 + 250]


async def test_since_zero_is_the_start_of_the_kept_log(start_server: Callable[..., AppServer]) -> None:
    server = start_server(LIVEDASH_EVENT_LOG_MAXLEN="100")
    # MAXLEN ~ trims whole stream nodes: write well past it, so the log no longer starts at its first event.
    for _ in range(4):
        post_batch(server.url, [{"device": "d", "metric": "m", "value": i, "ts": TS + i} for i in range(200)])
    zero = httpx.get(server.url + "/api/events", params={"since": "0-0", "limit": "5"}).json()
    assert "reset" not in zero and len(zero["events"]) == 5
    for since in ("0", " 0"):
        polled = httpx.get(server.url + "/api/events", params={"since": since, "limit": "5"}).json()
        assert polled == zero, since
    first_kept = zero["events"][0]["id"]
    ways: list[tuple[dict[str, str], dict[str, str]]] = [
        ({"Last-Event-ID": "0"}, {}),
        ({}, {"last_event_id": "0"}),
        ({"Last-Event-ID": "0-0"}, {}),
    ]
    for headers, params in ways:
        async with open_stream(server.url, headers=headers, **params) as stream:
            opened = await stream.next()
            replayed = await stream.next()
        assert opened.event == "ready", (headers, params)
        assert payload(opened)["cursor"] == "0-0"
        assert replayed.id == first_kept


def test_a_bare_millisecond_id_is_that_millisecond(server: AppServer) -> None:
    first = post_batch(server.url, [{"device": "d", "metric": "m", "value": 1, "ts": TS}])
    ms = int(first.split("-")[0])
    polled = httpx.get(server.url + "/api/events", params={"since": str(ms - 1)}).json()
    assert "reset" not in polled
    assert [e["id"] for e in polled["events"]][:1] == [first]

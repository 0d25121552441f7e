"""Topic patterns match in linear time, and a hostile one cannot pin a worker.

A ``*`` glob used to become a regex with one ``.*`` per star, which
backtracks exponentially: sixty stars against ``device/pump-1`` pinned a
worker at 100 % CPU. These tests check the matcher against a reference, the
bounds on what a request may ask for, and (against a real server) that a
pathological pattern answers about as fast as a normal one while ``/healthz``
keeps answering.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import cache

import httpx
from hypothesis import given
from hypothesis import strategies as st

from app.events.topics import MAX_STARS_PER_PATTERN, TopicFilter, glob_match, glob_parts

from .servers import AppServer
from .types import QuartClient

ADMIN_TOKEN = "bootstrap-admin-token-for-patterns-0123456789"
SECURE_ENV = {
    "LIVEDASH_AUTH": "on",
    "SECRET_KEY": "patterns-secret-key-0123456789abcdef012345",
    "LIVEDASH_ADMIN_TOKEN": ADMIN_TOKEN,
}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def reference_match(pattern: str, topic: str) -> bool:
    """The textbook dynamic-programming glob match, for comparison only."""

    @cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(topic)
        if pattern[i] == "*":
            return match(i + 1, j) or (j < len(topic) and match(i, j + 1))
        return j < len(topic) and pattern[i] == topic[j] and match(i + 1, j + 1)

    return match(0, 0)


alphabet = st.sampled_from("ab-/*")


@given(st.text(alphabet, max_size=10), st.text("ab-/", max_size=12))
def test_glob_match_agrees_with_the_reference(pattern: str, topic: str) -> None:
    assert glob_match(glob_parts(pattern), topic) == reference_match(pattern, topic)


def test_filter_examples() -> None:
    pumps = TopicFilter.parse("device/pump-*,room/dashboard")
    assert pumps.matches("device/pump-1")
    assert pumps.matches("room/dashboard")
    assert not pumps.matches("device/fan-1")
    assert not pumps.matches("room/dashboard2")
    assert TopicFilter.parse("*").matches("anything/at-all")
    assert TopicFilter.parse("*/pump-*").matches("device/pump-7")
    # The head and tail must not overlap: "ab*ba" is not matched by "aba".
    assert not TopicFilter.parse("ab*ba").matches("aba")


def test_pathological_pattern_is_linear() -> None:
    topic = "device/pump-1"
    hostile = TopicFilter(["*" * 200 + "X"])
    started = time.perf_counter()
    for _ in range(1000):
        assert not hostile.matches(topic)
    # A thousand matches of a 201-character pattern: the old regex took
    # longer than the age of the universe for one.
    assert time.perf_counter() - started < 2.0


async def test_too_many_stars_is_a_named_400(client: QuartClient) -> None:
    for path in ("/api/events", "/api/stream"):
        response = await client.get(path, query_string={"topics": "*" * (MAX_STARS_PER_PATTERN + 1) + "X"})
        assert response.status_code == 400
        body = await response.get_json()
        assert body["error"] == "bad_topics"
        assert "wildcards" in body["detail"]
    fine = await client.get("/api/events", query_string={"topics": "*" * MAX_STARS_PER_PATTERN + "X"})
    assert fine.status_code == 200


def _timed_get(url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = httpx.get(url, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


def test_hostile_scope_and_topics_answer_like_normal_ones(start_server: Callable[..., AppServer]) -> None:
    """Through a real server: a token whose scope is 199 stars and an X, and a
    request with the most stars allowed, are answered about as fast as a plain
    request, and ``/healthz`` answers while they run."""
    server = start_server(**SECURE_ENV)
    readings = [{"device": f"pump-{i}", "metric": "t", "value": i} for i in range(200)]
    assert httpx.post(f"{server.url}/api/metrics", json=readings, headers=ADMIN, timeout=10).status_code == 202

    def token(scope: str) -> dict[str, str]:
        made = httpx.post(
            f"{server.url}/api/tokens", json={"role": "viewer", "scope": [scope]}, headers=ADMIN, timeout=10
        )
        assert made.status_code == 201, made.text
        return {"Authorization": f"Bearer {made.json()['token']}"}

    normal, hostile = token("device/pump-*"), token("*" * 199 + "X")
    events = f"{server.url}/api/events?limit=500"
    # Warm up, then take the best of three for the baseline (noise only slows).
    _timed_get(events, normal)
    baseline = min(_timed_get(events, normal) for _ in range(3))

    timings: list[float] = []

    def hostile_requests() -> None:
        for _ in range(3):
            timings.append(_timed_get(events, hostile))
            timings.append(
                _timed_get(events + "&topics=" + "*" * MAX_STARS_PER_PATTERN + "X,device/*-*-*-*-*-*-*-X", normal)
            )

    worker = threading.Thread(target=hostile_requests)
    worker.start()
    health: list[int] = []
    while worker.is_alive() and len(health) < 200:
        health.append(httpx.get(f"{server.url}/healthz", timeout=5).status_code)
    worker.join(60)
    assert not worker.is_alive()
    assert len(timings) == 6
    assert set(health) <= {200}
    # Relative, with a floor for a loaded machine: the old matcher never answered.
    assert max(timings) < max(20 * baseline, 1.0), (baseline, timings)

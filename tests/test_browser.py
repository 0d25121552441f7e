"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

Each test runs a real server (``start_server``) with a one-second keep-alive,
so the page's watchdog and backoff run at test speed. Pages expose what they
received on ``window.livedash.debug`` (event ids, types, data, transport,
badge states); the tests read it to prove nothing was missed or repeated.
Every wait is bounded (Playwright timeouts, or ``wait_until``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from .browsers import BROWSER_MARKS, WAIT_MS
from .buffering_proxy import BufferingProxy
from .producing import start_producer
from .servers import AppServer
from .waiting import wait_until

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
Browser, Page, expect = sync_api.Browser, sync_api.Page, sync_api.expect


def post(server: AppServer, readings: list[dict[str, Any]] | dict[str, Any]) -> None:
    r = httpx.post(server.url + "/api/metrics", json=readings, timeout=5)
    assert r.status_code == 202, r.text


def received(page: Any, series: str) -> list[float]:
    """Values of the metric events this page accepted for one series, in order."""
    values: list[float] = page.evaluate(
        """(sid) => (window.livedash && window.livedash.debug ? window.livedash.debug.events : [])
              .filter((e) => e.type === 'metric' && `${e.data.device}/${e.data.metric}` === sid)
              .map((e) => e.data.value)""",
        series,
    )
    return values


def open_page(context: Any, url: str) -> Any:
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    return page


def streams_open(server: AppServer) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    match = re.search(r"^livedash_streams_open (\S+)$", text, re.M)
    assert match, text
    return float(match.group(1))


def as_user(context: Any, name: str) -> Any:
    context.add_init_script(f"localStorage.setItem('livedash:user', {name!r});")
    return context


def test_first_paint_is_server_rendered_then_values_move(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server()
    post(server, {"device": "pump-1", "metric": "temp", "value": 41.5, "unit": "°C"})

    # JavaScript off: the numbers are in the HTML itself.
    static = browser.new_context(java_script_enabled=False)
    page = open_page(static, server.url + "/")
    expect(page.locator("#tile--pump-1--temp .value strong")).to_have_text("41.5")
    expect(page.locator("#tile--pump-1--temp .unit")).to_have_text("°C")
    static.close()

    context = browser.new_context()
    page = open_page(context, server.url + "/")
    tile = page.locator("#tile--pump-1--temp")
    expect(tile.locator(".value strong")).to_have_text("41.5")
    expect(page.locator("#status")).to_have_text("Live")
    expect(tile.locator(".value time")).to_have_text(re.compile(r"\d+ s ago"))
    for value in (42.25, 43.0, 44.75):
        post(server, {"device": "pump-1", "metric": "temp", "value": value, "unit": "°C"})
        expect(tile.locator(".value strong")).to_have_text(f"{value:g}")
    # The sparkline moved with them (server history plus live points).
    assert page.evaluate("document.querySelector('#spark--pump-1--temp')._points.length") == 4
    # A series nobody had drawn gets its own tile.
    post(server, {"device": "fan-2", "metric": "rpm", "value": 1200})
    expect(page.locator("#tile--fan-2--rpm .value strong")).to_have_text("1200")

    # The series view: a uPlot chart of the history, live as well.
    page.goto(server.url + "/series/pump-1/temp")
    expect(page.locator("#chart[data-ready='1'] canvas")).to_have_count(1)
    post(server, {"device": "pump-1", "metric": "temp", "value": 45.5, "unit": "°C"})
    expect(page.locator(".series-main .value strong")).to_have_text("45.5")
    context.close()


def test_blocked_stream_falls_back_to_polling_and_upgrades_without_gaps(
    browser: Any, start_server: Callable[..., AppServer]
) -> None:
    server = start_server()
    post(server, {"device": "line-1", "metric": "count", "value": 0})
    context = browser.new_context()
    blocked = "**/api/stream*"
    context.route(blocked, lambda route: route.abort())
    page = open_page(context, server.url + "/")
    badge = page.locator("#status")
    expect(badge).to_have_text("Polling")
    expect(badge).to_have_attribute("data-state", "polling")

    # A numbered sequence, posted steadily while the page polls, switches
    # back to SSE, and streams: every number exactly once, in order.
    total = 60
    producer, sent = start_producer(server.url, "line-1", "count", total, 0.05)
    try:
        wait_until(lambda: len(received(page, "line-1/count")) >= 10, 10, what="polled readings")
        context.unroute(blocked)
        expect(badge).to_have_text("Live", timeout=15_000)
    finally:
        producer.join(20)
    assert sent.is_set()
    # The producer may be done before the stream is back (its retry is
    # jittered): then all of the gap came by catch-up. A few more once Live
    # must arrive over the stream itself.
    for n in range(total + 1, total + 6):
        post(server, {"device": "line-1", "metric": "count", "value": n})
    total += 5
    tile = page.locator("#tile--line-1--count .value strong")
    expect(tile).to_have_text(str(total))
    values = received(page, "line-1/count")
    assert values == list(range(1, total + 1)), values
    transports = page.evaluate("[...new Set(window.livedash.debug.events.map((e) => e.via))]")
    assert "poll" in transports and "sse" in transports
    context.close()


def test_a_silent_stream_trips_the_watchdog(browser: Any, start_server: Callable[..., AppServer]) -> None:
    # A buffering proxy: the request is accepted and then nothing arrives.
    server = start_server()
    post(server, {"device": "tank", "metric": "level", "value": 1})
    context = browser.new_context()
    context.route("**/api/stream*", lambda route: None)  # never answered
    page = open_page(context, server.url + "/")
    expect(page.locator("#status")).to_have_text("Polling", timeout=8_000)  # 2 keep-alives + slack
    post(server, {"device": "tank", "metric": "level", "value": 2})
    expect(page.locator("#tile--tank--level .value strong")).to_have_text("2")
    context.close()


def test_a_buffering_proxy_means_polling_in_seconds_and_sse_once_it_is_gone(
    browser: Any, start_server: Callable[..., AppServer]
) -> None:
    """Behind a proxy that buffers whole responses the stream never says `ready`: the page polls
    within seconds (not after the 2-keep-alive watchdog), probes SSE in the background, and is back
    on it within ~10 s of the proxy passing streams through; every reading exactly once."""
    # The production keep-alive (15 s): only the missing `ready` can make the switch this quick.
    server = start_server(LIVEDASH_KEEPALIVE_INTERVAL="15")
    post(server, {"device": "line-9", "metric": "count", "value": 0})
    proxy = BufferingProxy(server.port).start()
    context = browser.new_context()
    total = 80
    try:
        opened = time.monotonic()
        page = open_page(context, proxy.url + "/")
        badge = page.locator("#status")
        expect(badge).to_have_text("Polling", timeout=8_000)
        fell_back = time.monotonic() - opened
        assert proxy.held_back >= 1
        producer, sent = start_producer(server.url, "line-9", "count", total, 0.1)
        try:
            wait_until(lambda: len(received(page, "line-9/count")) >= 10, 10, what="polled readings")
            proxy.buffering = False
            passing = time.monotonic()
            expect(badge).to_have_text("Live", timeout=15_000)
            came_back = time.monotonic() - passing
        finally:
            producer.join(30)
        assert sent.is_set()
        for n in range(total + 1, total + 6):
            post(server, {"device": "line-9", "metric": "count", "value": n})
        total += 5
        expect(page.locator("#tile--line-9--count .value strong")).to_have_text(str(total))
        values = received(page, "line-9/count")
        assert values == list(range(1, total + 1)), values
        transports = page.evaluate("[...new Set(window.livedash.debug.events.map((e) => e.via))]")
        assert "poll" in transports and "sse" in transports
        print(f"buffering proxy: polling after {fell_back:.1f}s; back on SSE {came_back:.1f}s after it passed streams")
        assert fell_back < 8, fell_back
        assert came_back < 12, came_back
    finally:
        context.close()
        proxy.stop()


def test_two_people_see_each_other_and_a_closed_tab_leaves(
    browser: Any, start_server: Callable[..., AppServer]
) -> None:
    server = start_server(
        LIVEDASH_PRESENCE_HEARTBEAT_INTERVAL="0.5",
        LIVEDASH_PRESENCE_TTL="1.5",
        LIVEDASH_PRESENCE_GRACE="0.5",
        LIVEDASH_PRESENCE_SWEEP_INTERVAL="0.2",
    )
    ana_ctx, bob_ctx = as_user(browser.new_context(), "Ana Lima"), as_user(browser.new_context(), "Bob")
    # Bob's goodbye beacon is lost: only the TTL can tell Ana he left.
    bob_ctx.route("**/api/presence/leave", lambda route: route.abort())
    ana, bob = open_page(ana_ctx, server.url + "/"), open_page(bob_ctx, server.url + "/")
    expect(ana.locator("#presence li[data-user='Bob']")).to_have_count(1)
    expect(bob.locator("#presence li[data-user='Ana Lima'] .initials")).to_have_text("AL")
    expect(ana.locator("#presence li.mine[data-user='Ana Lima']")).to_have_count(1)

    # A second tab of Ana's counts as a tab, not as a person.
    ana2 = open_page(ana_ctx, server.url + "/")
    expect(bob.locator("#presence li[data-user='Ana Lima'] .tabs")).to_have_text("×2")
    ana2.close()
    expect(bob.locator("#presence li[data-user='Ana Lima'] .tabs")).to_have_count(0)

    closed = time.monotonic()
    bob_ctx.close()
    expect(ana.locator("#presence li[data-user='Bob']")).to_have_count(0, timeout=6_000)
    # TTL + grace + one sweep, with room for a loaded machine.
    assert time.monotonic() - closed < 6
    ana_ctx.close()


def _edit(page: Any, note_id: str, text: str) -> Any:
    note = page.locator(f"#note--{note_id}")
    if not note.locator("details.note-edit").evaluate("d => d.open"):
        note.locator("summary").click()
    area = note.locator(f"#annotation-editor--{note_id} textarea[name=text]")
    area.fill(text)
    return note


def test_two_editors_of_one_note_get_the_conflict_view(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server()
    post(server, {"device": "pump-1", "metric": "temp", "value": 40})
    created = httpx.post(
        server.url + "/api/annotations", json={"device": "pump-1", "metric": "temp", "text": "original"}, timeout=5
    ).json()
    note_id = created["id"]
    ana_ctx, bob_ctx = as_user(browser.new_context(), "Ana"), as_user(browser.new_context(), "Bob")
    ana, bob = open_page(ana_ctx, server.url + "/"), open_page(bob_ctx, server.url + "/")
    for page in (ana, bob):
        expect(page.locator("#status")).to_have_text("Live")

    def consistent(text: str, version: int) -> None:
        for page in (ana, bob):
            expect(page.locator(f"#note--{note_id} .note-text")).to_have_text(text)
            expect(page.locator(f"#note--{note_id} .note-version")).to_have_text(str(version))
        stored = httpx.get(f"{server.url}/api/annotations/{note_id}", timeout=5).json()
        assert (stored["text"], stored["version"]) == (text, version)

    # Round 1: Bob is typing when Ana saves; Bob keeps his.
    bob_note = _edit(bob, note_id, "Bob: bearing replaced")
    expect(ana.locator(f"#note--{note_id} .note-editing")).to_have_text(re.compile("Bob is editing"))
    ana_note = _edit(ana, note_id, "Ana: seal replaced")
    ana_note.locator("button[type=submit]").click()
    expect(bob_note.locator(".note-text")).to_have_text("Ana: seal replaced")  # live, under his editor
    expect(bob_note.locator("textarea[name=text]")).to_have_value("Bob: bearing replaced")  # his typing kept
    bob_note.locator("form button[type=submit]").click()
    conflict = bob.locator(".annotation-conflict")
    expect(conflict).to_be_visible()
    expect(conflict.locator(".mine")).to_contain_text("Bob: bearing replaced")
    expect(conflict.locator(".theirs")).to_contain_text("Ana: seal replaced")
    ARTIFACTS.mkdir(exist_ok=True)
    bob.locator(f"#note--{note_id}").screenshot(path=str(ARTIFACTS / "conflict.png"))
    conflict.locator("button.keep-mine").click()
    expect(bob.locator(".annotation-conflict")).to_have_count(0)
    consistent("Bob: bearing replaced", 3)
    stored = httpx.get(f"{server.url}/api/annotations/{note_id}", timeout=5).json()
    assert stored["author"] == "Bob"  # a blank author field is signed by the editor's name

    # Round 2: the same race; this time Bob takes theirs.
    _edit(bob, note_id, "Bob: second thoughts")
    ana_note = _edit(ana, note_id, "Ana: pump swapped")
    ana_note.locator("button[type=submit]").click()
    expect(bob_note.locator(".note-text")).to_have_text("Ana: pump swapped")
    bob_note.locator("form button[type=submit]").click()
    bob.locator(".annotation-conflict button.take-theirs").click()
    expect(bob.locator(".annotation-conflict")).to_have_count(0)
    expect(bob_note.locator("textarea[name=text]")).to_have_value("Ana: pump swapped")
    consistent("Ana: pump swapped", 4)
    ana_ctx.close()
    bob_ctx.close()


def test_two_editors_of_one_rule_get_the_conflict_view(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server()
    post(server, {"device": "pump-1", "metric": "temp", "value": 40})
    rule = {"device": "pump-1", "metric": "temp", "op": "above", "threshold": 80}
    rule_id = httpx.post(server.url + "/api/alerts/rules", json=rule, timeout=5).json()["id"]
    ana, bob = (open_page(browser.new_context(), server.url + "/series/pump-1/temp") for _ in range(2))
    threshold = "form.rule-edit input[name=threshold]"
    bob.locator(threshold).fill("90")  # Bob is typing when Ana saves
    ana.locator(threshold).fill("85")
    ana.locator("form.rule-edit button[type=submit]").click()
    expect(bob.locator(f"#rule--{rule_id} .rule-text")).to_have_text(re.compile(r"above 85$"))
    bob.locator("form.rule-edit button[type=submit]").click()
    conflict = bob.locator(".rule-conflict")
    expect(conflict.locator(".theirs")).to_contain_text("above 85")
    conflict.locator("button.keep-mine").click()
    expect(conflict).to_be_hidden()
    wait_until(lambda: httpx.get(server.url + "/api/alerts/rules", timeout=5).json()["rules"][0]["version"] == 3, 10)
    stored = httpx.get(server.url + "/api/alerts/rules", timeout=5).json()["rules"][0]
    assert stored["threshold"] == 90
    # A value the server refuses: its reason is shown under the form.
    bob.locator(threshold).fill("not a number")
    bob.locator("form.rule-edit button[type=submit]").click()
    expect(bob.locator("form.rule-edit .form-error")).to_contain_text("threshold")
    for page in (ana, bob):
        page.context.close()


def test_ten_tabs_share_one_stream(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server()
    post(server, {"device": "press", "metric": "force", "value": 1})
    context = browser.new_context()
    pages = [open_page(context, server.url + "/") for _ in range(10)]
    for page in pages:
        expect(page.locator("#status")).to_have_text("Live")
    wait_until(lambda: streams_open(server) == 1, 10, what="one stream for ten tabs")
    post(server, {"device": "press", "metric": "force", "value": 2})
    for page in pages:
        expect(page.locator("#tile--press--force .value strong")).to_have_text("2")
    assert streams_open(server) == 1

    # The leader closes: another tab takes the stream over, still one.
    leaders = [p for p in pages if p.evaluate("window.livedash.debug.leader")]
    assert len(leaders) == 1
    leaders[0].close()
    rest = [p for p in pages if p is not leaders[0]]
    wait_until(lambda: sum(p.evaluate("window.livedash.debug.leader") for p in rest) == 1, 10, what="a new leader")
    post(server, {"device": "press", "metric": "force", "value": 3})
    for page in rest:
        expect(page.locator("#tile--press--force .value strong")).to_have_text("3")
        assert received(page, "press/force") == [2, 3]
    wait_until(lambda: streams_open(server) == 1, 10, what="still one stream")
    context.close()


def test_screenshot_of_the_dashboard(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server()
    now = int(time.time() * 1000)
    history = []
    for i in range(60):
        ts = now - (60 - i) * 1000
        history += [
            {"device": "pump-1", "metric": "temp", "value": 40 + 5 * ((i % 20) / 20), "unit": "°C", "ts": ts},
            {"device": "pump-1", "metric": "pressure", "value": 2.1 + (i % 7) * 0.05, "unit": "bar", "ts": ts},
            {"device": "fan-2", "metric": "rpm", "value": 1150 + (i * 37) % 120, "unit": "rpm", "ts": ts},
            {"device": "tank-3", "metric": "level", "value": 72 - i * 0.2, "unit": "%", "ts": ts},
        ]
    httpx.post(
        server.url + "/api/alerts/rules",
        json={"device": "pump-1", "metric": "temp", "op": "above", "threshold": 44, "name": "pump hot"},
        timeout=5,
    )
    httpx.post(
        server.url + "/api/alerts/rules",
        json={"device": "tank-3", "metric": "level", "op": "below", "threshold": 20},
        timeout=5,
    )
    post(server, history)
    post(server, {"device": "pump-1", "metric": "temp", "value": 46.2, "unit": "°C"})
    httpx.post(
        server.url + "/api/annotations",
        json={"device": "pump-1", "metric": "temp", "ts": now - 30_000, "text": "bearing replaced", "author": "Ana"},
        timeout=5,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    for scheme in ("light", "dark"):
        context = as_user(browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme), "Ana")
        page = open_page(context, server.url + "/")
        expect(page.locator("#status")).to_have_text("Live")
        expect(page.locator("#tile--pump-1--temp .alert-pill")).to_have_text("Alert: pump hot")
        expect(page.locator("#presence li[data-user='Ana']")).to_have_count(1)
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{scheme}.png"), full_page=True)
        page.goto(server.url + "/series/pump-1/temp")
        expect(page.locator("#chart[data-ready='1'] canvas")).to_have_count(1)
        page.screenshot(path=str(ARTIFACTS / f"series-{scheme}.png"), full_page=True)
        context.close()
    assert (ARTIFACTS / "dashboard-light.png").stat().st_size > 10_000


def test_pages_break_no_content_security_policy_rule(browser: Any, start_server: Callable[..., AppServer]) -> None:
    """The CSP forbids inline script and style; a page that relied on either would log a violation."""
    server = start_server()
    post(server, {"device": "pump-1", "metric": "temp", "value": 20.5, "unit": "°C"})
    context = browser.new_context()
    violations: list[str] = []
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        for path in ("/", "/series/pump-1/temp"):
            page.goto(server.url + path)
            expect(page.locator("#status")).to_have_text("Live", timeout=WAIT_MS)
        page.goto(server.url + "/docs")
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    assert violations == []

"""The alerts page in Chromium: an acknowledgement and a silence made in one context show up live in another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .browsers import BROWSER_MARKS, WAIT_MS
from .servers import AppServer

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
expect = sync_api.expect


def test_ack_and_silence_show_live_in_a_second_context(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server()
    rule = httpx.post(
        server.url + "/api/alerts/rules",
        json={"device": "pump-1", "metric": "temp", "op": "above", "threshold": 80, "name": "hot"},
        timeout=5,
    ).json()
    assert (
        httpx.post(server.url + "/api/metrics", json={"device": "pump-1", "metric": "temp", "value": 90}).status_code
        == 202
    )
    one, two = browser.new_context(), browser.new_context()
    try:
        first, second = one.new_page(), two.new_page()
        for page in (first, second):
            page.goto(server.url + "/alerts")
            expect(page.locator(f"#alert--{rule['id']}")).to_be_visible(timeout=WAIT_MS)
        # Both pages hold their stream before anything changes (the ready event has come).
        for page in (first, second):
            page.wait_for_function("() => window.livedash && window.livedash.debug", timeout=WAIT_MS)

        first.locator(f"#alert--{rule['id']} .alert-ack").click()
        expect(second.locator(f"#alert--{rule['id']} .ack")).to_contain_text("Acknowledged", timeout=WAIT_MS)

        first.locator(f"#alert--{rule['id']} .alert-silence select").select_option("2h")
        first.locator(f"#alert--{rule['id']} .alert-silence input[name=reason]").fill("pump swap")
        first.locator(f"#alert--{rule['id']} .alert-silence button").click()
        expect(second.locator(f"#alert--{rule['id']} .silence")).to_contain_text("pump swap", timeout=WAIT_MS)

        # A resolution empties the list on both.
        assert (
            httpx.post(
                server.url + "/api/metrics", json={"device": "pump-1", "metric": "temp", "value": 10}
            ).status_code
            == 202
        )
        for page in (first, second):
            expect(page.locator(f"#alert--{rule['id']}")).to_have_count(0, timeout=WAIT_MS)
    finally:
        one.close()
        two.close()

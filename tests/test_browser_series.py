"""The series page's time range in Chromium: picker, URL, zoom and back, min-max rows, live tail, range notes."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from .servers import AppServer
from .test_browser import open_page, post, pytestmark, sync_api

__all__ = ["pytestmark"]  # the Chromium/Playwright skip marks of test_browser.py

expect = sync_api.expect
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def test_range_picker_zoom_back_and_live_tail(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server()
    now = int(time.time() * 1000)
    post(server, [{"device": "d", "metric": "m", "value": i % 10, "ts": now - i * MINUTE} for i in range(1, 121)])
    for ts, text in [(now - 30 * MINUTE, "bearing replaced"), (now - 3 * DAY, "long ago")]:
        r = httpx.post(server.url + "/api/annotations", json={"device": "d", "ts": ts, "text": text}, timeout=5)
        assert r.status_code == 201

    context = browser.new_context()
    page = open_page(context, server.url + "/series/d/m?from=-1h")
    chart = page.locator("#chart")
    # The URL's range: the last hour, raw points, with that hour's note as a marker.
    expect(chart).to_have_attribute("data-step", "0")
    expect(chart).to_have_attribute("data-count", re.compile(r"^(59|60)$"))  # the oldest may fall out as time moves
    expect(chart).to_have_attribute("data-markers", "1")
    expect(page.locator("button[data-range='1h']")).to_have_attribute("aria-pressed", "true")

    # The picker: 24 h is past the raw retention, so rollup rows (a min-max band and the mean); the URL follows.
    page.locator("button[data-range='24h']").click()
    expect(chart).to_have_attribute("data-step", "3600000")
    assert "from=-24h" in page.url
    expect(page.locator("#range-status")).to_contain_text("1-hour buckets")

    # Back to the hour (the browser's history), then a posted reading extends the chart.
    page.locator("button[data-range-back]").click()
    expect(chart).to_have_attribute("data-step", "0")
    assert page.url.endswith("?from=-1h")
    expect(page.locator("#status")).to_have_text("Live")
    before = int(chart.get_attribute("data-count") or 0)
    post(server, {"device": "d", "metric": "m", "value": 42.0})
    expect(chart).to_have_attribute("data-count", str(before + 1))

    # Drag across the middle of the chart: that stretch becomes the range, in the URL.
    box = page.locator("#chart .u-over").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.up()
    page.wait_for_url("**/series/d/m?from=*&to=*")
    expect(chart).to_have_attribute("data-range", re.compile(r"^\?from=\d+&to=\d+$"))
    expect(chart).to_have_attribute("data-step", "0")
    count = int(chart.get_attribute("data-count") or 0)
    assert 5 <= count <= 30, count
    # A shared URL opens the same range.
    other = open_page(browser.new_context(), page.url)
    expect(other.locator("#chart")).to_have_attribute("data-count", str(count))
    context.close()


def test_silent_series_look_stale_and_sparklines_show_their_scale(
    browser: Any, start_server: Callable[..., AppServer]
) -> None:
    server = start_server()
    now = int(time.time() * 1000)
    # One reading a second until a minute ago: silent for 60 intervals. The other: one a minute, until now.
    post(
        server, [{"device": "quiet", "metric": "m", "value": 10 + i, "ts": now - 60_000 - i * 1000} for i in range(10)]
    )
    post(server, [{"device": "busy", "metric": "m", "value": 5 - i, "ts": now - i * MINUTE} for i in range(10)])
    page = open_page(browser.new_context(), server.url + "/")
    expect(page.locator("#tile--quiet--m")).to_have_class(re.compile(r"\bstale\b"))
    expect(page.locator("#tile--quiet--m .stale-badge")).to_have_text("silent")
    expect(page.locator("#tile--busy--m")).not_to_have_class(re.compile(r"\bstale\b"))
    expect(page.locator("#tile--quiet--m .spark-scale")).to_have_text("10 – 19")
    expect(page.locator("#tile--busy--m .spark-scale")).to_have_text("-4 – 5")
    # A reading brings the quiet one back.
    post(server, {"device": "quiet", "metric": "m", "value": 12})
    expect(page.locator("#tile--quiet--m")).not_to_have_class(re.compile(r"\bstale\b"))


def test_tiles_grouped_by_device_with_a_filter(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server()
    post(server, [{"device": d, "metric": m, "value": 1.0} for d in ("pump-1", "fan-2") for m in ("rpm", "temp")])
    post(server, {"device": "pump-1", "metric": "load", "value": 3.0, "tags": {"core": "cpu7"}})
    page = open_page(browser.new_context(), server.url + "/")
    headings = page.locator("#tiles .device-heading")
    expect(headings).to_have_text(["fan-2", "pump-1"])
    # The filter matches device, metric or tags; a device with nothing shown loses its heading.
    page.fill("#tile-filter", "cpu7")
    expect(page.locator("#tiles .tile:visible")).to_have_count(1)
    expect(page.locator("#tiles .device-heading:visible")).to_have_text(["pump-1"])
    page.fill("#tile-filter", "temp")
    expect(page.locator("#tiles .tile:visible")).to_have_count(2)
    # A device nobody had drawn gets its heading, in order, and the filter applies to it.
    post(server, {"device": "boiler-0", "metric": "temp", "value": 70.0})
    expect(page.locator("#tile--boiler-0--temp")).to_be_visible()
    expect(page.locator("#tiles .device-heading:visible")).to_have_text(["boiler-0", "fan-2", "pump-1"])
    page.fill("#tile-filter", "")
    expect(page.locator("#tiles .tile:visible")).to_have_count(6)

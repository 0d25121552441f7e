"""A stranger's htmx page on another origin, in Chromium: docs/examples/dashboard.html.

The page is served, as it is in the repository, by a tiny static server on a
second loopback port; only the livedash address it names (``EXAMPLE_ORIGIN``)
is replaced by the test's server (or the buffering proxy in front of it), as
the example tells its readers to do. livedash runs with auth on and that
port on ``LIVEDASH_CORS_ORIGINS``; the page gets a viewer token the test made
in its URL fragment. The extension (static/livedash-htmx.js) then asks for
stream tickets, swaps the fragments, falls back to polling when the proxy
holds the stream back, and comes back. A page from a port not on the list gets
nothing: the browser refuses every answer, and the page says it is offline.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from .browsers import BROWSER_MARKS, WAIT_MS
from .buffering_proxy import BufferingProxy
from .producing import start_producer
from .servers import AppServer
from .waiting import wait_until

pytestmark = BROWSER_MARKS
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
expect = sync_api.expect

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
EXAMPLE_ORIGIN = "http://127.0.0.1:8000"  # the livedash address written in the example
ADMIN = "embed-admin-token-0123456789abcdef"
SECRET = "embed-test-secret-key-0123456789abcdef"
SERIES_VALUE = re.compile(r'id="value--pump-1--pressure"[^>]*data-value="([^"]+)"')


class Site:
    """docs/examples/ over HTTP on a loopback port, with the example's livedash address replaced."""

    def __init__(self) -> None:
        self.livedash = EXAMPLE_ORIGIN
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.split("?", 1)[0].lstrip("/")
                path = EXAMPLES / name
                if not name or "/" in name or not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes().replace(EXAMPLE_ORIGIN.encode(), site.livedash.encode())
                kind = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}[path.suffix]
                self.send_response(200)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serving() -> Iterator[Site]:
    site = Site()
    site.thread.start()
    try:
        yield site
    finally:
        site.httpd.shutdown()
        site.httpd.server_close()


@pytest.fixture
def sites() -> Iterator[tuple[Site, Site]]:
    """The allowed site, and one on a port that is not on the list."""
    with serving() as allowed, serving() as refused:
        yield allowed, refused


def viewer_token(server: AppServer) -> str:
    r = httpx.post(
        server.url + "/api/tokens",
        json={"role": "viewer", "name": "example page"},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=5,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def post(server: AppServer, body: dict[str, Any], path: str = "/api/metrics") -> httpx.Response:
    r = httpx.post(server.url + path, json=body, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
    assert r.status_code in (200, 201, 202), r.text
    return r


def readings(page: Any) -> list[tuple[float, str]]:
    """pump-1/pressure values the page's connection accepted, in order, with how each came (sse, poll)."""
    events: list[dict[str, Any]] = page.evaluate(
        "LiveDash.connections.length ? LiveDash.connections[0].debug.events.filter((e) => e.type === 'metric') : []"
    )
    found = []
    for ev in events:
        match = SERIES_VALUE.search(ev.get("html") or "")
        if match:
            found.append((float(match.group(1)), ev["via"]))
    return found


def cors_server(start_server: Callable[..., AppServer], origin: str) -> AppServer:
    """livedash as every test here runs it: auth on, the admin token known, ``origin`` the one allowed."""
    return start_server(LIVEDASH_AUTH="on", SECRET_KEY=SECRET, LIVEDASH_ADMIN_TOKEN=ADMIN, LIVEDASH_CORS_ORIGINS=origin)


def runs(vias: list[str]) -> list[str]:
    """["sse", "sse", "poll", "sse"] -> ["sse", "poll", "sse"]."""
    return [v for i, v in enumerate(vias) if i == 0 or vias[i - 1] != v]


def test_an_htmx_page_on_another_origin_is_live_falls_back_and_comes_back(
    browser: Any, start_server: Callable[..., AppServer], sites: tuple[Site, Site]
) -> None:
    site, _ = sites
    server = cors_server(start_server, site.origin)
    proxy = BufferingProxy(server.port).start()
    proxy.buffering = False
    site.livedash = proxy.url
    token = viewer_token(server)
    post(server, {"device": "pump-1", "metric": "pressure", "value": 0, "unit": "bar"})
    post(server, {"device": "pump-2", "metric": "pressure", "value": 2.5, "unit": "bar"})
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{site.origin}/dashboard.html#token={token}")
        status = page.locator("[livedash-status]")
        expect(status).to_have_attribute("data-state", "live")
        expect(status).to_have_text("Live")
        # The token left the address bar; tiles show the values (the stream replays the log).
        assert "token" not in page.url
        expect(page.locator("#value--pump-2--pressure strong")).to_have_text("2.5")
        expect(page.locator("#value--pump-2--pressure .unit")).to_have_text("bar")
        expect(page.locator("#value--pump-1--pressure strong")).to_have_text("0")

        # A note goes into the list, newest first, and is updated in place.
        note = post(server, {"device": "pump-1", "text": "seal replaced <b>today</b>"}, "/api/annotations").json()
        item = page.locator(f"#notes #note--{note['id']}")
        expect(item.locator(".note-text")).to_have_text("seal replaced <b>today</b>")
        post(server, {"text": "seal replaced", "version": 1}, f"/api/annotations/{note['id']}")
        expect(item.locator(".note-version")).to_have_text("2")
        expect(page.locator("#notes li")).to_have_count(1)

        # Numbered readings posted steadily across SSE -> polling (the proxy cuts the
        # stream and holds every new one back) -> SSE (it passes streams again).
        total = 60
        producer, sent = start_producer(
            server.url, "pump-1", "pressure", total, 0.1, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        try:
            wait_until(lambda: len(readings(page)) >= 6, 10, what="streamed readings")
            proxy.buffering = True
            proxy.drop_streams()
            expect(status).to_have_attribute("data-state", "polling", timeout=10_000)
            polled = len(readings(page))
            wait_until(lambda: len(readings(page)) >= polled + 5, 10, what="polled readings")
            proxy.buffering = False
            expect(status).to_have_attribute("data-state", "live", timeout=15_000)
        finally:
            producer.join(30)
        assert sent.is_set()
        for n in range(total + 1, total + 6):  # over the stream once it is back
            post(server, {"device": "pump-1", "metric": "pressure", "value": n})
        total += 5
        expect(page.locator("#value--pump-1--pressure strong")).to_have_text(str(total))
        got = readings(page)
        assert [value for value, _ in got] == [0.0, *range(1, total + 1)], got
        assert runs([via for _, via in got if via != "catch-up"])[-3:] == ["sse", "poll", "sse"], got
        assert proxy.held_back >= 1

        # A second tab shares the first one's connection: it follows, relayed, with no stream of its own.
        second = context.new_page()
        second.set_default_timeout(WAIT_MS)
        second.goto(f"{site.origin}/dashboard.html#token={token}")
        expect(second.locator("[livedash-status]")).to_have_attribute("data-state", "live")
        post(server, {"device": "pump-1", "metric": "pressure", "value": total + 1})
        expect(second.locator("#value--pump-1--pressure strong")).to_have_text(str(total + 1))
        assert second.evaluate("LiveDash.connections[0].debug.leader") is False
        # What it has came from the leader's relays, or its own catch-up read of /api/events on opening.
        vias = second.evaluate("[...new Set(LiveDash.connections[0].debug.events.map((e) => e.via))]")
        assert set(vias) <= {"relay", "catch-up"}, vias
        assert page.evaluate("LiveDash.connections[0].debug.leader") is True
    finally:
        context.close()
        proxy.stop()


def test_a_page_from_an_origin_not_on_the_list_gets_nothing(
    browser: Any, start_server: Callable[..., AppServer], sites: tuple[Site, Site]
) -> None:
    allowed, refused = sites
    server = cors_server(start_server, allowed.origin)
    refused.livedash = allowed.livedash = server.url
    token = viewer_token(server)
    post(server, {"device": "pump-1", "metric": "pressure", "value": 7})
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        refusals: list[str] = []
        page.on("console", lambda m: refusals.append(m.text) if "CORS" in m.text else None)
        page.goto(f"{refused.origin}/dashboard.html#token={token}")
        # Tickets and polls are refused by the browser (no CORS headers for this origin):
        # the extension tries, falls back, and says it is offline; no value ever shows.
        expect(page.locator("[livedash-status]")).to_have_attribute("data-state", "offline", timeout=30_000)
        expect(page.locator("#value--pump-1--pressure")).to_have_text("–")
        assert page.evaluate("LiveDash.connections[0].debug.events.length") == 0
        assert refusals, "the browser reported no CORS refusal"

        # The same page with a token livedash refuses, from the allowed origin: it says so.
        other = context.new_page()
        other.set_default_timeout(WAIT_MS)
        other.goto(f"{allowed.origin}/dashboard.html#token=ldt_not-a-real-token")
        expect(other.locator("[livedash-status]")).to_have_attribute("data-state", "denied")
        expect(other.locator("[livedash-status]")).to_have_text("Not allowed")
    finally:
        context.close()

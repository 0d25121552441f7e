"""Login CSRF in a real browser (Debian's Chromium through Playwright) against a real server.

Our own login form signs the browser in; a page on another site that posts
its own token to ``/login`` does not (issue 16, item 6). The browser, not
the test, decides which ``Origin`` and ``Sec-Fetch-Site`` it sends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from .browsers import BROWSER_MARKS, WAIT_MS
from .servers import AppServer

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")

ADMIN_TOKEN = "bootstrap-admin-token-for-csrf-0123456789"
SECURE_ENV = {
    "LIVEDASH_AUTH": "on",
    "SECRET_KEY": "csrf-secret-key-0123456789abcdef0123456789",
    "LIVEDASH_ADMIN_TOKEN": ADMIN_TOKEN,
}


@pytest.fixture
def attacker_site() -> Iterator[Callable[[str], str]]:
    """Serves, on http://localhost:<port> (another site than 127.0.0.1), a page whose form posts to a given URL."""
    pages: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def page(html: str) -> str:
        pages["/"] = html.encode()
        return f"http://localhost:{httpd.server_address[1]}/"

    try:
        yield page
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def viewer_token(server: AppServer) -> str:
    created = httpx.post(
        f"{server.url}/api/tokens",
        json={"role": "viewer"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["token"])


def test_own_login_form_signs_in(start_server: Callable[..., AppServer], browser: Any) -> None:
    server = start_server(**SECURE_ENV)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server.url}/login")
        page.fill("input[name=token]", viewer_token(server))
        with page.expect_navigation(timeout=WAIT_MS):
            page.click("button[type=submit]")
        assert page.url == f"{server.url}/"
        assert [c["name"] for c in context.cookies(server.url)] == ["livedash_session"]
    finally:
        context.close()


def test_another_sites_form_cannot_sign_the_browser_in(
    start_server: Callable[..., AppServer], browser: Any, attacker_site: Callable[[str], str]
) -> None:
    server = start_server(**SECURE_ENV)
    # The attacker's own valid token: the victim would be signed in as the attacker.
    evil = attacker_site(
        f'<form method="post" action="{server.url}/login">'
        f'<input type="hidden" name="token" value="{viewer_token(server)}">'
        '<input type="hidden" name="next" value="/"><button type="submit">win a prize</button></form>'
    )
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(evil)
        with page.expect_navigation(timeout=WAIT_MS) as navigation:
            page.click("button[type=submit]")
        answer = navigation.value
        assert answer is not None and answer.status == 403
        assert "cross_site_login" in page.content()
        assert context.cookies(server.url) == [], "no session cookie was set"
    finally:
        context.close()

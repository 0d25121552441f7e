"""Pages of a logged-in browser (auth on), in Debian's Chromium driven by Playwright.

tests/test_browser.py runs with auth off; here the browser signs in with a
token link, as a person would, and holds a session cookie and its CSRF token.
Its writes (htmx forms and the page's own ``api()`` calls) must carry the
token, and an error page must not start the live client at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from .browsers import BROWSER_MARKS, WAIT_MS
from .servers import AppServer

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
expect = sync_api.expect

ADMIN_TOKEN = "bootstrap-admin-token-for-browser-0123456789"
SECURE_ENV = {
    "LIVEDASH_AUTH": "on",
    "SECRET_KEY": "browser-secret-key-0123456789abcdef01234567",
    "LIVEDASH_ADMIN_TOKEN": ADMIN_TOKEN,
}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LIVE_CLIENT = ("/api/stream", "/api/events", "/api/presence")


def signed_in(browser: Any, server: AppServer, role: str, name: str | None = None) -> Any:
    """A browser context holding a session cookie, got through a token link."""
    spec = {"role": role} if name is None else {"role": role, "name": name}
    created = httpx.post(server.url + "/api/tokens", json=spec, headers=ADMIN, timeout=5)
    assert created.status_code == 201, created.text
    context = browser.new_context()
    # The context's request client shares its cookie jar: no page has run yet.
    link = server.url + "/login?" + urlencode({"token": created.json()["token"]})
    answer = context.request.get(link, max_redirects=0)
    assert answer.status == 303 and context.cookies(server.url), answer.status
    return context


def new_page(context: Any) -> Any:
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return page


def api_path(url: str) -> str:
    path = httpx.URL(url).path
    return path if path.startswith("/api/") else ""


def test_an_error_page_runs_no_live_client(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server(**SECURE_ENV)
    context = signed_in(browser, server, "viewer")
    dashboard = new_page(context)
    dashboard.goto(server.url + "/")
    expect(dashboard.locator("#status")).to_have_text("Live")  # signed in, and the live client runs there

    page = new_page(context)  # a tab of its own: the dashboard's requests are not counted
    requested: list[str] = []
    page.on("request", lambda r: requested.append(api_path(r.url)))
    response = page.goto(server.url + "/series/x/y/z")
    assert response is not None and response.status == 404
    expect(page.locator("section.error h2")).to_contain_text("404")
    # No stream, poll or heartbeat: wait (bounded) until the tab's network has
    # been idle for 500 ms (a live client's open stream never is). Playwright
    # delivers the request events during its own calls, so read them after one.
    with contextlib.suppress(sync_api.TimeoutError):
        page.wait_for_load_state("networkidle", timeout=5_000)
    assert [path for path in requested if path.startswith(LIVE_CLIENT)] == []
    expect(page.locator("#status")).to_have_count(0)  # no badge to say "Live"
    assert page.locator("script").count() == 0
    assert page.evaluate("window.livedash === undefined")

    # The same tab on a live page: its requests are seen, so the silence above was the page's.
    page.goto(server.url + "/")
    expect(page.locator("#status")).to_have_text("Live")
    assert [path for path in requested if path.startswith(LIVE_CLIENT)] != []
    context.close()


def test_a_signed_in_page_writes_with_its_csrf_token(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server(**SECURE_ENV)
    reading = {"device": "pump-1", "metric": "temp", "value": 40}
    assert httpx.post(server.url + "/api/metrics", json=reading, headers=ADMIN, timeout=5).status_code == 202
    context = signed_in(browser, server, "admin")
    writes: list[tuple[str, int]] = []
    context.on("response", lambda r: writes.append((api_path(r.url), r.status)) if r.request.method == "POST" else None)
    page = new_page(context)
    # api(): the presence heartbeat, sent as the page starts.
    with page.expect_response(lambda r: api_path(r.url) == "/api/presence" and r.request.method == "POST") as beat:
        page.goto(server.url + "/series/pump-1/temp")
    assert beat.value.status == 200
    expect(page.locator("#status")).to_have_text("Live")

    # htmx forms: a note and an alert rule, each back as a live event.
    page.locator("form.note-create textarea[name=text]").fill("seal checked")
    page.locator("form.note-create button[type=submit]").click()
    expect(page.locator("#notes .note .note-text")).to_have_text("seal checked")
    page.locator("form.rule-create input[name=threshold]").fill("90")
    page.locator("form.rule-create button[type=submit]").click()
    rule = page.locator("#rules .rule")
    expect(rule).to_have_count(1)
    # api() again: the rule's Delete button.
    rule.locator("button.rule-delete").click()
    expect(rule).to_have_count(0)
    # The session renewal a `reauth` event triggers (the page's own module instance).
    assert page.evaluate("async () => (await import('/static/js/api.js')).renewSession()") is True
    # The token never goes to another origin.
    refused = page.evaluate(
        """async () => {
             const { api } = await import('/static/js/api.js');
             try { await api('https://elsewhere.example/x', { method: 'POST' }); } catch (e) { return true; }
             return false;
           }"""
    )
    assert refused is True

    refusals = [(path, status) for path, status in writes if status in (401, 403)]
    assert refusals == []
    assert {path for path, status in writes if 200 <= status < 300} >= {
        "/api/presence",
        "/api/annotations",
        "/api/alerts/rules",
        "/api/session/renew",
    }
    context.close()


# --- the page knows who you are (issue 18, item 2) ---------------------------------------------
def seed(server: AppServer) -> str:
    """A reading, a rule and a note on pump-1/temp; the note's id."""
    reading = {"device": "pump-1", "metric": "temp", "value": 40}
    assert httpx.post(server.url + "/api/metrics", json=reading, headers=ADMIN, timeout=5).status_code == 202
    rule = {"device": "pump-1", "metric": "temp", "op": "above", "threshold": 80}
    assert httpx.post(server.url + "/api/alerts/rules", json=rule, headers=ADMIN, timeout=5).status_code == 201
    note = {"device": "pump-1", "metric": "temp", "text": "bearing replaced"}
    created = httpx.post(server.url + "/api/annotations", json=note, headers=ADMIN, timeout=5)
    assert created.status_code == 201
    return str(created.json()["id"])


def test_each_role_is_offered_what_it_may_do(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server(**SECURE_ENV)
    seed(server)
    offered = {}
    for role in ("viewer", "editor", "admin"):
        context = signed_in(browser, server, role, f"Ana {role}")
        page = new_page(context)
        page.goto(server.url + "/series/pump-1/temp")
        expect(page.locator("#status")).to_have_text("Live")
        expect(page.locator("#whoami .me-name")).to_have_text(f"Ana {role}")
        expect(page.locator("#whoami .me-role")).to_have_text(role)
        expect(page.locator("form.logout button")).to_have_count(1)
        expect(page.locator("#me")).to_have_count(0)  # no self-declared name with auth on
        expect(page.locator("#notes .note")).to_have_count(1)
        expect(page.locator("#rules .rule")).to_have_count(1)
        offered[role] = {
            "add note": page.get_by_role("button", name="Add note").count(),
            "edit": page.locator(".note summary", has_text="Edit").count(),
            "delete note": page.locator(".note button.note-delete").count(),
            "new rule": page.locator("form.rule-create").count(),
            "rule editor": page.locator("#rules form.rule-edit").count(),
        }
        context.close()
    assert offered["viewer"] == {"add note": 0, "edit": 0, "delete note": 0, "new rule": 0, "rule editor": 0}
    assert offered["editor"] == {"add note": 1, "edit": 1, "delete note": 1, "new rule": 0, "rule editor": 0}
    assert offered["admin"] == {"add note": 1, "edit": 1, "delete note": 1, "new rule": 1, "rule editor": 1}


def open_editor(page: Any, note_id: str) -> Any:
    page.locator(f"#note--{note_id} summary").click()
    editor = page.locator(f"#annotation-editor--{note_id}")
    expect(editor.locator("textarea[name=text]")).to_be_visible()
    return editor


def test_a_refused_save_says_why_in_place(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server(**SECURE_ENV)
    note_id = seed(server)
    context = signed_in(browser, server, "editor", "Bob")
    page = new_page(context)
    page.goto(server.url + "/")
    expect(page.locator("#status")).to_have_text("Live")
    editor = open_editor(page, note_id)
    editor.locator("textarea[name=text]").fill("seal checked too")
    editor.locator("input[name=tags]").fill(", ".join(f"t{i}" for i in range(20)))  # more than 16 tags: 422
    editor.locator("button[type=submit]").click()
    error = editor.locator(".form-error")
    expect(error).to_contain_text("Not saved (422)")
    expect(error).to_contain_text("tags")
    expect(editor.locator("textarea[name=text]")).to_have_value("seal checked too")
    # No answer at all: said too.
    context.set_offline(True)
    editor.locator("button[type=submit]").click()
    expect(error).to_contain_text("Network error")
    context.set_offline(False)
    context.close()


def test_a_note_deleted_while_edited_keeps_the_text(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server(**SECURE_ENV)
    note_id = seed(server)
    context = signed_in(browser, server, "editor", "Bob")
    page = new_page(context)
    page.goto(server.url + "/")
    expect(page.locator("#status")).to_have_text("Live")
    editor = open_editor(page, note_id)
    editor.locator("textarea[name=text]").fill("my long careful explanation")
    # Someone else (another context: the admin token) deletes it meanwhile.
    deleted = httpx.post(f"{server.url}/api/annotations/{note_id}/delete", headers=ADMIN, timeout=5)
    assert deleted.status_code == 200
    expect(editor.locator(".note-gone")).to_contain_text("LIVEDASH_ADMIN_TOKEN deleted this note")
    expect(editor.locator("textarea[name=text]")).to_have_value("my long careful explanation")
    expect(page.locator(f"#note--{note_id}")).to_have_count(1)
    editor.locator("button[type=submit]").click()
    expect(editor.locator(".form-error")).to_contain_text("Not saved (410)")
    expect(editor.locator("textarea[name=text]")).to_have_value("my long careful explanation")
    context.close()


def test_logout_ends_the_session(browser: Any, start_server: Callable[..., AppServer]) -> None:
    server = start_server(**SECURE_ENV)
    context = signed_in(browser, server, "viewer", "Ana Lima")
    cookie = {c["name"]: c["value"] for c in context.cookies(server.url)}
    page = new_page(context)
    page.goto(server.url + "/")
    expect(page.locator("#whoami")).to_contain_text("Ana Lima")
    page.locator("form.logout button").click()
    page.wait_for_url("**/login**")
    assert context.cookies(server.url) == []
    page.goto(server.url + "/")
    assert "/login" in page.url
    # The old cookie is over on the server too, not just forgotten by the browser.
    answer = httpx.get(server.url + "/api/session", cookies=cookie, timeout=5)
    assert answer.status_code == 401
    context.close()

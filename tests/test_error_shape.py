"""The one error path: every refusal has the same JSON shape, an htmx fragment, or a page.

Pins ``{"error": <code>, "detail": ...}`` (plus ``current`` on a 409 or 410)
for each status the API answers, so a route cannot invent a body of its own;
an htmx request gets an HTML fragment naming the code; a browser gets a page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from quart import Quart

from app import create_app
from app.errors import ApiError
from app.settings import Settings

from .types import QuartClient

ADMIN_TOKEN = "bootstrap-admin-token-for-error-shape-0123"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def secure_client(make_settings: Callable[..., Settings]) -> AsyncIterator[QuartClient]:
    settings = make_settings(
        auth="on", secret_key="error-shape-secret-0123456789abcdef0123", admin_token=ADMIN_TOKEN, max_body_bytes=4096
    )
    application: Quart = create_app(settings)
    async with application.test_app():
        yield application.test_client()


def assert_shape(body: Any, code: str) -> None:
    assert isinstance(body, dict)
    assert body["error"] == code
    assert "detail" in body
    assert set(body) <= {"error", "detail", "current"}, body


async def test_every_status_has_the_one_json_shape(secure_client: QuartClient) -> None:
    http = secure_client
    viewer = await http.post("/api/tokens", json={"role": "viewer"}, headers=ADMIN)
    viewer_headers = {"Authorization": f"Bearer {(await viewer.get_json())['token']}"}
    note = await (
        await http.post("/api/annotations", json={"device": "pump-1", "text": "seal"}, headers=ADMIN)
    ).get_json()

    cases: list[tuple[int, str, Any]] = [
        (
            400,
            "malformed_json",
            http.post("/api/metrics", data=b"{", headers=ADMIN | {"Content-Type": "application/json"}),
        ),
        (401, "unauthorized", http.get("/api/metrics/latest")),
        (
            401,
            "bad_credentials",
            http.get("/api/metrics/latest", headers={"Authorization": "Bearer nope-nope-nope-nope"}),
        ),
        (
            403,
            "wrong_role",
            http.post("/api/metrics", json={"device": "p", "metric": "t", "value": 1}, headers=viewer_headers),
        ),
        (404, "not_found", http.get("/api/nothing-here", headers=ADMIN)),
        (405, "method_not_allowed", http.put("/api/metrics", json={}, headers=ADMIN)),
        (409, "conflict", http.post(f"/api/annotations/{note['id']}", json={"text": "x", "version": 7}, headers=ADMIN)),
        (
            413,
            "too_large",
            http.post(
                "/api/metrics", data=b"[" + b"1," * 4096 + b"1]", headers=ADMIN | {"Content-Type": "application/json"}
            ),
        ),
        (
            415,
            "unsupported_media_type",
            http.post("/api/metrics", data=b"x", headers=ADMIN | {"Content-Type": "text/plain"}),
        ),
        (
            422,
            "invalid",
            http.post("/api/metrics", json={"device": "pump-1", "metric": "t", "value": "hot"}, headers=ADMIN),
        ),
    ]
    for status, code, pending in cases:
        response = await pending
        assert response.status_code == status, (status, code, await response.get_data(as_text=True))
        assert response.content_type == "application/json"
        body = await response.get_json()
        assert_shape(body, code)
        if status == 409:
            assert body["current"]["version"] == 1
        if status == 422:
            assert body["detail"] == [
                {"field": "value", "error": "Input should be a valid number, unable to parse string as a number"}
            ]

    deleted = await http.post(f"/api/annotations/{note['id']}/delete", json={}, headers=ADMIN)
    assert deleted.status_code == 200
    gone = await http.get(f"/api/annotations/{note['id']}", headers=ADMIN)
    if gone.status_code == 410:  # a deleted document answers its tombstone
        body = await gone.get_json()
        assert_shape(body, "gone")
        assert body["current"]["deleted"] is True


async def test_gone_is_part_of_the_hierarchy() -> None:
    from app.errors import Gone

    assert issubclass(Gone, ApiError) and Gone.status == 410 and Gone.code == "gone"


async def test_htmx_requests_get_a_fragment(client: QuartClient) -> None:
    response = await client.post(
        "/api/annotations",
        form={"device": "not a slug!", "text": "x"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert response.content_type.startswith("text/html")
    html = await response.get_data(as_text=True)
    assert 'data-error="invalid"' in html and 'data-status="422"' in html
    assert "device:" in html  # the field is named for people
    assert "<html" not in html  # a fragment, not a page


async def test_browsers_get_a_page_and_api_clients_json(client: QuartClient) -> None:
    page = await client.get("/no/such/page", headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.content_type.startswith("text/html")
    assert "<html" in await page.get_data(as_text=True)
    api = await client.get("/no/such/page", headers={"Accept": "application/json"})
    assert api.status_code == 404
    assert_shape(await api.get_json(), "not_found")

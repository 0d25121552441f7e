"""Prometheus can scrape ``/metrics``; API clients get 401, never the login page (issue 16, item 9).

Only a browser that asks for HTML (``Accept: text/html``) is sent to
``/login`` for a page; curl (``*/*``), scripts and Prometheus get a JSON 401.
A scraper authenticates with ``LIVEDASH_METRICS_TOKEN`` (the role
``metrics``, checked in process: no Redis) or a ``metrics`` token: it reads
``/metrics`` and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart

from app import create_app
from app.settings import Settings

from .servers import AppServer
from .types import QuartClient

ADMIN_TOKEN = "bootstrap-admin-token-for-tests-0123456789"
METRICS_TOKEN = "scrape-token-for-tests-0123456789abcdef"
SECRET = "test-secret-key-0123456789abcdef0123456789"
# What Prometheus 2.x and 3.x send when scraping.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
API_ACCEPTS = ("*/*", PROMETHEUS_ACCEPT, PROMETHEUS_3_ACCEPT, "text/plain", None)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def sclient(make_settings: Callable[..., Settings]) -> AsyncIterator[QuartClient]:
    settings = make_settings(auth="on", secret_key=SECRET, admin_token=ADMIN_TOKEN, metrics_token=METRICS_TOKEN)
    application: Quart = create_app(settings)
    async with application.test_app():
        yield application.test_client()


def accept(value: str | None) -> dict[str, str]:
    return {} if value is None else {"Accept": value}


async def assert_json_401(client: QuartClient, path: str, headers: dict[str, str]) -> None:
    response = await client.get(path, headers=headers)
    assert response.status_code == 401, (path, headers, response.status_code, response.headers.get("Location"))
    assert "Location" not in response.headers
    assert response.mimetype == "application/json", (path, headers)
    assert (await response.get_json())["error"] in ("unauthorized", "bad_credentials")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_api_clients_get_401_never_a_redirect(sclient: QuartClient) -> None:
    for value in API_ACCEPTS:
        for path in ("/metrics", "/", "/series/pump-1/t", "/api/metrics/latest"):
            await assert_json_401(sclient, path, accept(value))
        # A wrong token is a 401 too, whatever the Accept.
        await assert_json_401(sclient, "/metrics", {**accept(value), **bearer("ldt_wrong-wrong-wrong-wrong-wrong")})


async def test_browsers_asking_for_pages_still_go_to_login(sclient: QuartClient) -> None:
    for path, query in (("/", ""), ("/series/pump-1/t", ""), ("/metrics", "")):
        response = await sclient.get(path + query, headers={"Accept": BROWSER_ACCEPT})
        assert response.status_code == 303, path
        assert response.headers["Location"] == f"/login?next={path}"
    # The API stays an API for browsers too.
    assert (await sclient.get("/api/metrics/latest", headers={"Accept": BROWSER_ACCEPT})).status_code == 401


async def test_the_metrics_token_reads_metrics_and_nothing_else(sclient: QuartClient) -> None:
    for value in API_ACCEPTS:
        response = await sclient.get("/metrics", headers={**accept(value), **bearer(METRICS_TOKEN)})
        assert response.status_code == 200, value
        assert response.mimetype == "text/plain"
        text = await response.get_data(as_text=True)
        names = {family.name for family in text_string_to_metric_families(text)}
        assert "livedash_http_requests" in names and "livedash_streams_open" in names
    scraper = bearer(METRICS_TOKEN)
    for path in ("/api/metrics/latest", "/api/events", "/api/stream", "/api/audit", "/api/tokens", "/"):
        response = await sclient.get(path, headers=scraper)
        assert response.status_code == 403, path
        assert (await response.get_json())["error"] == "wrong_role"
    posted = await sclient.post("/api/metrics", json={"device": "d", "metric": "m", "value": 1}, headers=scraper)
    assert posted.status_code == 403
    # It is not a way in for a browser either: no session from it.
    login = await sclient.get(f"/login?token={METRICS_TOKEN}")
    assert login.status_code == 401 and "Set-Cookie" not in login.headers


async def test_a_metrics_role_token_scrapes_too(sclient: QuartClient) -> None:
    made = await sclient.post(
        "/api/tokens", json={"role": "metrics", "name": "prometheus"}, headers=bearer(ADMIN_TOKEN)
    )
    assert made.status_code == 201, await made.get_data(as_text=True)
    token = (await made.get_json())["token"]
    assert (await sclient.get("/metrics", headers=bearer(token))).status_code == 200
    assert (await sclient.get("/api/metrics/latest", headers=bearer(token))).status_code == 403
    # Viewers (any reading role) still read /metrics, as before.
    viewer = await sclient.post("/api/tokens", json={"role": "viewer"}, headers=bearer(ADMIN_TOKEN))
    assert (await sclient.get("/metrics", headers=bearer((await viewer.get_json())["token"]))).status_code == 200


def test_prometheus_scrapes_a_real_server_with_workers(start_server: Callable[..., AppServer]) -> None:
    server = start_server(
        workers=2,
        LIVEDASH_AUTH="on",
        SECRET_KEY=SECRET,
        LIVEDASH_ADMIN_TOKEN=ADMIN_TOKEN,
        LIVEDASH_METRICS_TOKEN=METRICS_TOKEN,
    )
    # A scraper that follows redirects, without a credential: 401 JSON, not the login page's 200 HTML.
    for value in API_ACCEPTS:
        response = httpx.get(server.url + "/metrics", headers=accept(value), follow_redirects=True, timeout=10)
        assert response.status_code == 401, (value, response.status_code, response.url)
        assert response.headers["content-type"].startswith("application/json")
    # With the credential, as Prometheus sends it (a fresh connection each time: both workers answer).
    for _ in range(6):
        response = httpx.get(
            server.url + "/metrics",
            headers={"Accept": PROMETHEUS_ACCEPT, **bearer(METRICS_TOKEN)},
            follow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert any(f.name == "livedash_http_requests" for f in text_string_to_metric_families(response.text))

"""Fixtures: a real Redis, a private key prefix per test, the app, real servers.

Redis: by default a private embedded server (the same code path as the app's
embedded default) started once per session under a temporary directory. Set
``LIVEDASH_TEST_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/13``) to run
against another server instead; ``.ci/run`` does that for a second pass.

Every test gets its own key prefix, and removes exactly the keys under it
when it ends: nothing else in the database is touched, never a FLUSHDB.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis as sync_redis
from quart import Quart

from app import create_app
from app.settings import Settings
from app.storage.embedded import EmbeddedServer

from .browsers import ARGS, CHROMIUM
from .servers import AppServer
from .types import QuartClient

TEST_REDIS_ENV = "LIVEDASH_TEST_REDIS_URL"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses Redis, so CI can run those again on another server."""
    for item in items:
        if "redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)


def ingest_libraries(client: sync_redis.Redis) -> set[str]:
    listed = cast(list[list[Any]], client.function_list(library="livedash_ingest_*"))
    return {entry[entry.index(b"library_name") + 1].decode() for entry in listed}


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get(TEST_REDIS_ENV)
    if external:
        # Keys go with their test's prefix; the ingest function libraries this run loaded (one per distinct
        # ingest settings, app/storage/lua Library) are server-wide, so they go at the end of the run.
        client = sync_redis.Redis.from_url(external)
        before = ingest_libraries(client)
        yield external
        for name in ingest_libraries(client) - before:
            client.function_delete(name)
        client.close()
        return
    server = EmbeddedServer(tmp_path_factory.mktemp("redis"))
    server.ensure_running()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"ldtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = sync_redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@pytest.fixture
def sync_client(redis_url: str) -> Iterator[sync_redis.Redis]:
    client = sync_redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _settings(redis_url: str, key_prefix: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "key_prefix": key_prefix,
        "keepalive_interval": 1.0,
        "demo": False,
        # Most tests are about something else; tests/test_security*.py turn auth on.
        "auth": "off",
        # In-process apps share the pytest process: leave its collector as it is
        # (tests/test_observability.py checks the tuning in a real server).
        "gc_freeze": False,
        "gc_threshold": gc.get_threshold(),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def make_settings(redis_url: str, key_prefix: str) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        return _settings(redis_url, key_prefix, **overrides)

    return make


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Quart]:
    application = create_app(make_settings())
    async with application.test_app():
        yield application


@pytest.fixture
def client(app: Quart) -> QuartClient:
    return app.test_client()


@pytest.fixture
def server_env(redis_url: str, key_prefix: str) -> dict[str, str]:
    """The environment of a real app process sharing this test's Redis and prefix."""
    return {
        "REDIS_URL": redis_url,
        "LIVEDASH_KEY_PREFIX": key_prefix,
        "LIVEDASH_KEEPALIVE_INTERVAL": "1",
        "LIVEDASH_DEMO": "0",
        "LIVEDASH_AUTH": "off",
    }


@pytest.fixture
def start_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., AppServer]]:
    """Factory: start a real hypercorn process (stopped at teardown)."""
    started: list[AppServer] = []

    def start(workers: int = 1, extra_args: tuple[str, ...] = (), **env: str) -> AppServer:
        merged = {**server_env, **env}
        log_path = tmp_path / f"server-{len(started)}.log"
        server = AppServer(merged, workers=workers, log_path=log_path, extra_args=extra_args)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., AppServer]) -> AppServer:
    return start_server()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, one per test module (skipped without either)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()

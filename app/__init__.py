"""livedash: an SSE-first live dashboard server.

``create_app()`` is the factory hypercorn calls (``app:create_app()``); tests
pass their own ``Settings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from quart import Quart

from app import errors
from app import lifespan as engine_module
from app.auth import guard as auth
from app.events.fragments import HtmlFragments, install_filters
from app.events.sse import json_frame
from app.ingest import fast_path as fast_ingest
from app.ingest.demo import run_simulator
from app.ingest.mqtt import run_bridge
from app.ops import gc_tuning, logs, telemetry
from app.ops.shutdown import hypercorn_shutdown_event, watch_shutdown
from app.presence import run_sweeper
from app.settings import Settings
from app.web import assets, security_headers
from app.web.routes import alerts, dashboard, events, health, presence, prometheus, series_page, stream
from app.web.routes import annotations as annotation_routes
from app.web.routes import docs as docs_routes
from app.web.routes import login as auth_routes
from app.web.routes import readings as metrics
from app.web.routes import tokens as token_routes
from app.web.routes import write as write_routes

log = logging.getLogger("livedash")


def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or Settings()
    app = Quart(__name__, template_folder=str(assets.TEMPLATES), static_folder=str(assets.STATIC))
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        RESPONSE_TIMEOUT=None,
        BODY_TIMEOUT=30,
        # Our background tasks loop until cancelled; do not wait for them.
        BACKGROUND_TASK_SHUTDOWN_TIMEOUT=0.2,
        JSON_SORT_KEYS=False,
    )
    logs.configure(settings)
    install_filters(app.jinja_env)
    errors.register(app)
    # First of the request hooks: every later line (auth's too) carries the request id.
    logs.init_app(app)

    # Registered before the engine's own hook, so background tasks stop while
    # Redis is still open (after_serving hooks run in registration order).
    @app.after_serving
    async def _stop_background() -> None:
        for task in list(app.background_tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    engine_module.init_app(app, settings)
    telemetry.init_app(app, settings)
    # After the engine (its before_serving opens Redis first); refuses to build
    # an app with auth on and no SECRET_KEY.
    auth.init_app(app, settings)
    security_headers.init_app(app)
    fast_ingest.init_app(app, settings.ingest_fast_path)
    for blueprint in (
        auth_routes.bp,
        token_routes.bp,
        alerts.bp,
        annotation_routes.bp,
        dashboard.bp,
        events.bp,
        health.bp,
        metrics.bp,
        presence.bp,
        prometheus.bp,
        series_page.bp,
        stream.bp,
        docs_routes.bp,
        write_routes.bp,
    ):
        app.register_blueprint(blueprint)

    @app.before_serving
    async def _formats_and_demo() -> None:
        eng = engine_module.engine_of(app)
        eng.encoders = {"json": json_frame, "html": HtmlFragments(app.jinja_loader).frame}
        # Every process sweeps presence expiry; the leave script dedupes. It
        # ends on shutdown_event, so shutdown does not wait out Quart's timeout.
        app.add_background_task(run_sweeper, eng.presence, settings.presence_sweep_interval, app.shutdown_event)
        shutdown = hypercorn_shutdown_event()
        if shutdown is not None:
            app.add_background_task(watch_shutdown, shutdown, eng.broker.end_streams)
        if settings.demo:
            app.add_background_task(run_simulator, eng, settings.demo_interval)
            log.info("demo simulator on: posting readings every %ss", settings.demo_interval)
        if settings.mqtt_url:
            # Every process runs it; only the holder of a Redis lease connects.
            app.add_background_task(run_bridge, eng, settings.mqtt_url, settings.mqtt_topic, settings.mqtt_qos)
        # Last of the start-up: what exists now lives as long as the process.
        gc_tuning.tune(settings.gc_threshold, settings.gc_freeze)

    return app

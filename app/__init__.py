"""livedash: an SSE-first live dashboard server.

``create_app()`` is the factory hypercorn calls (``app:create_app()``); tests
pass their own ``Settings``.
"""

from __future__ import annotations

import logging

from quart import Quart

from app import errors, lifespan
from app.auth import guard as auth
from app.events.fragments import install_filters
from app.ingest import fast_path as fast_ingest
from app.ops import logs
from app.settings import Settings
from app.web import assets, raw_stream, security_headers
from app.web.cors import Cors
from app.web.routes import (
    alert_channels,
    alert_views,
    alerts,
    dashboard,
    events,
    health,
    presence,
    prometheus,
    series_page,
    stream,
)
from app.web.routes import annotations as annotation_routes
from app.web.routes import docs as docs_routes
from app.web.routes import login as auth_routes
from app.web.routes import readings as metrics
from app.web.routes import tokens as token_routes
from app.web.routes import write as write_routes
from app.web.unread_body import UnreadBody

log = logging.getLogger("livedash")


def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or Settings()
    app = Quart(__name__, template_folder=str(assets.TEMPLATES), static_folder=str(assets.STATIC))
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        RESPONSE_TIMEOUT=None,
        BODY_TIMEOUT=30,
        JSON_SORT_KEYS=False,
    )
    logs.configure(settings)
    install_filters(app.jinja_env)
    errors.register(app)
    # First of the request hooks: every later line (auth's too) carries the request id.
    logs.init_app(app)

    lifespan.init_app(app, settings)
    # Refuses to build an app with auth on and no SECRET_KEY.
    auth.init_app(app, settings)
    security_headers.init_app(app)
    fast_ingest.init_app(app, settings.ingest_fast_path)
    raw_stream.init_app(app, settings.stream_fast_path)
    for blueprint in (
        auth_routes.bp,
        token_routes.bp,
        alerts.bp,
        alert_channels.bp,
        alert_views.bp,
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
    # CORS for the allowed origins (LIVEDASH_CORS_ORIGINS) around everything, the ingest fast path included.
    app.asgi_app = Cors(app.asgi_app, settings.cors_origin_set)  # type: ignore[method-assign]
    # Outermost: a refusal sent before the body was read keeps the keep-alive connection usable.
    app.asgi_app = UnreadBody(app.asgi_app)  # type: ignore[method-assign]

    return app

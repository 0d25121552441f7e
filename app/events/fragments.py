"""HTML fragments for the htmx flavour of the stream (``format=html``).

Each event type may have a template ``templates/fragments/<type>.html``; the
fragment is rendered once per event and shared by every htmx subscriber.
Fragments carry ``hx-swap-oob`` so one listener on the page places them.
Jinja autoescaping is on: device names, units and tags are escaped.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson
from jinja2 import BaseLoader, Environment, TemplateNotFound, select_autoescape

from app.events.event import Event
from app.events.sse import frame
from app.storage.keyspace import series_id

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9-]")


def dom_id(*parts: str) -> str:
    """A DOM id from slugs, bijective (``.`` -> ``_2e``), safe in a CSS selector."""
    return "--".join(_UNSAFE.sub(lambda m: f"_{ord(m.group()):02x}", p) for p in parts)


def tag_text(tags: dict[str, str] | None) -> str:
    """A series' tags as people read them: ``cpu=cpu0,host=web-01`` (sorted by key)."""
    return ",".join(f"{k}={v}" for k, v in sorted((tags or {}).items()))


def tile_id(r: dict[str, Any]) -> str:
    """The DOM id part of a series' tile: device and metric, then its tags if it has any (static/js/tiles.js too)."""
    text = tag_text(r.get("tags"))
    return dom_id(r["device"], r["metric"], text) if text else dom_id(r["device"], r["metric"])


def series_key(r: dict[str, Any]) -> str:
    """A reading's (or rule's) canonical series id."""
    return series_id(r["device"], r["metric"], r.get("tags"))


def fmt_time(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_value(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}" if abs(value) >= 1e6 or abs(value) < 1e-3 else f"{value:.2f}".rstrip("0").rstrip(".")


def install_filters(env: Environment) -> None:
    env.filters["dom_id"] = lambda parts: dom_id(*parts)
    env.filters["fmt_time"] = fmt_time
    env.filters["fmt_value"] = fmt_value
    env.filters["tag_text"] = tag_text
    env.filters["tile_id"] = tile_id
    env.filters["series_key"] = series_key


class HtmlFragments:
    """Renders fragments synchronously, once per event, from the app's templates.

    Quart's own environment is async-only; the broker encodes inside the
    stream generator, so this keeps a plain (sync) environment on the same
    loader, with autoescaping on.
    """

    def __init__(self, loader: BaseLoader | None) -> None:
        self.env = Environment(loader=loader, autoescape=select_autoescape(default=True), auto_reload=False)
        install_filters(self.env)

    def render(self, ev: Event) -> str:
        try:
            template = self.env.get_template(f"fragments/{ev.type}.html")
        except TemplateNotFound:
            return ""
        try:
            return template.render(event=ev, data=ev.data())
        except Exception:
            # One bad event must not end every htmx stream: send it without a fragment.
            log.exception("could not render the %s fragment of event %s", ev.type, ev.id)
            return ""

    def frame(self, ev: Event) -> bytes:
        return frame(self.render(ev), event=ev.type, event_id=ev.id)

    def json(self, ev: Event) -> bytes:
        """The event as in ``/api/events``, with its fragment as ``html`` (``format=html``, for htmx pollers).

        The JSON ``data`` stays: one object shape for both formats, the fragment added beside it.
        """
        plain = ev.json()
        return plain[:-1] + b',"html":' + orjson.dumps(self.render(ev)) + b"}"

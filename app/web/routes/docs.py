"""``/openapi.json`` and ``/docs``: the API description, and a page for people.

The page is rendered here, from the same document, as plain HTML with a
little inline CSS: no JavaScript renderer and nothing fetched from a CDN, so
it works offline and behind any firewall.
"""

from __future__ import annotations

from typing import Any

import orjson
from quart import Blueprint, Response, current_app, render_template_string

from app.auth.access import PUBLIC
from app.services import services
from app.web import openapi
from app.web.routing import route

bp = Blueprint("docs", __name__)


def document() -> dict[str, Any]:
    svc = services()
    if svc.openapi is None:
        # Built on first use: every blueprint is registered by then.
        svc.openapi = openapi.build(current_app._get_current_object(), svc.settings)  # type: ignore[attr-defined]
    return svc.openapi


# Public: the API's description holds no data, and is how a newcomer learns to get a token.
@route(bp, "GET", "/openapi.json", access=PUBLIC, summary="This document", tag="operations")
async def openapi_json() -> Response:
    """The OpenAPI 3.1 document."""
    body = orjson.dumps(document())
    return Response(body, content_type="application/json", headers={"Cache-Control": "no-cache"})


# A stylesheet of its own, not inline: the Content-Security-Policy allows only same-origin styles.
CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d232a}
code,pre{font:13px ui-monospace,monospace;background:#f3f5f7;border-radius:4px}
pre{padding:.6rem;overflow:auto}code{padding:0 .2rem}
.op{border:1px solid #d8dde3;border-radius:6px;margin:.8rem 0;padding:.4rem .8rem}
.m{display:inline-block;min-width:4rem;font-weight:700;text-transform:uppercase}
.get{color:#136}.post{color:#160}.delete{color:#a11}
table{border-collapse:collapse}td,th{border-bottom:1px solid #e5e8eb;padding:.2rem .6rem;text-align:left}
.desc{white-space:pre-line}nav a{margin-right:.8rem}
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>livedash API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs.css"></head><body>
<h1>livedash API <small>{{ doc.info.version }}</small></h1>
<p>{{ doc.info.description }} Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
<nav>{% for tag in tags %}<a href="#{{ tag }}">{{ tag }}</a>{% endfor %}<a href="#schemas">schemas</a></nav>
{% for tag in tags %}<h2 id="{{ tag }}">{{ tag }}</h2>
{% for path, method, op in ops if (op.tags or ['other'])[0] == tag %}
<div class="op" id="{{ op.operationId }}"><span class="m {{ method }}">{{ method }}</span> <code>{{ path }}</code>
 — {{ op.summary }}
{% if op.description %}<div class="desc">{{ op.description }}</div>{% endif %}
{% if op.parameters %}<table><tr><th>parameter</th><th>in</th><th>meaning</th></tr>
{% for p in op.parameters %}<tr><td><code>{{ p.name }}</code>{% if p.required %} *{% endif %}</td>
<td>{{ p['in'] }}</td><td>{{ p.description }}</td></tr>{% endfor %}</table>{% endif %}
{% if op.requestBody %}<p>Body: {% for ct, c in op.requestBody.content.items() %}<code>{{ ct }}</code>
{{ schema_name(c.schema) }} {% endfor %}</p>{% endif %}
<p>Answers: {% for status in op.responses %}<code>{{ status }}</code> {% endfor %}</p>
{% if op['x-event-types'] %}<p>Event types: {% for t in op['x-event-types'] %}<code>{{ t }}</code> {% endfor %};
control: {% for t in op['x-control-event-types'] %}<code>{{ t }}</code> {% endfor %}</p>{% endif %}
</div>{% endfor %}{% endfor %}
<h2 id="schemas">schemas</h2>
{% for name, schema in doc.components.schemas.items() %}<h3 id="schema-{{ name }}">{{ name }}</h3>
<pre>{{ pretty(schema) }}</pre>{% endfor %}
</body></html>"""


def _schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "oneOf" in schema:
        return " or ".join(_schema_name(s) if "$ref" in s else "a list of them" for s in schema["oneOf"])
    return str(schema.get("type", ""))


@route(
    bp, "GET", "/docs", access=PUBLIC, summary="This document as an HTML page", tag="operations", ok_type="text/html"
)
async def docs_page() -> str:
    """The API reference as an HTML page (works offline)."""
    doc = document()
    ops = [(path, method, op) for path, methods in doc["paths"].items() for method, op in methods.items()]
    tags = list(dict.fromkeys((op.get("tags") or ["other"])[0] for _, _, op in ops))
    return await render_template_string(
        PAGE,
        doc=doc,
        ops=ops,
        tags=tags,
        schema_name=_schema_name,
        pretty=lambda s: orjson.dumps(s, option=orjson.OPT_INDENT_2).decode(),
    )


@route(
    bp, "GET", "/docs.css", access=PUBLIC, summary="The docs page's stylesheet", tag="operations", ok_type="text/css"
)
async def docs_css() -> Response:
    """The docs page's stylesheet."""
    return Response(CSS, content_type="text/css; charset=utf-8", headers={"Cache-Control": "max-age=3600"})

"""The API description: complete (every served route), valid OpenAPI, and a docs page that works offline."""

from __future__ import annotations

import re
from typing import Any

from openapi_spec_validator import validate
from quart import Quart

from app.settings import Settings
from app.validation import SLUG_PATTERN
from app.web import openapi, routing
from app.web.routes.stream import EVENT_SCHEMA

from .types import QuartClient


async def test_every_route_is_in_the_document_and_described(app: Quart, client: QuartClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc = await response.get_json()
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    served = openapi.served_operations(app)
    assert served, "the app serves no routes?"
    assert not served - documented, f"routes missing from /openapi.json: {sorted(served - documented)}"
    # Present is not enough: each one is described by its @route declaration, not just listed from its docstring.
    generic = sorted((m, p) for p, ops in doc["paths"].items() for m, op in ops.items() if op.get("x-undocumented"))
    assert not generic, f"routes without an operation in their @route declaration: {generic}"
    # And the declarations of the app's endpoints describe nothing it does not serve.
    declared = routing.declarations()
    described = {(op.method, op.path) for endpoint in app.view_functions for op in declared[endpoint].ops}
    assert not described - served, f"declared operations the app does not serve: {sorted(described - served)}"


async def test_document_is_valid_openapi(client: QuartClient) -> None:
    doc = await (await client.get("/openapi.json")).get_json()
    validate(doc)
    assert doc["openapi"].startswith("3.")


async def test_document_covers_models_events_and_errors(client: QuartClient) -> None:
    doc = await (await client.get("/openapi.json")).get_json()
    schemas = doc["components"]["schemas"]
    for name in ("Reading", "AnnotationCreate", "RuleCreate", "Heartbeat", "Event", "Error", "EventPage"):
        assert name in schemas, name
    assert set(schemas["Reading"]["required"]) == {"device", "metric", "value"}
    assert set(schemas["Event"]["properties"]) == {"id", "type", "topic", "ts", "data", "html"}  # html: format=html
    assert set(schemas["Event"]["required"]) == {"id", "type", "topic", "ts", "data"}
    assert set(schemas["Error"]["properties"]) == {"error", "detail"}
    stream = doc["paths"]["/api/stream"]["get"]
    assert stream["x-event-types"] == ["metric", "annotation", "alert_rule", "alert", "presence"]
    assert stream["x-control-event-types"] == ["ready", "reset", "ping", "status", "bye", "reauth", "skip"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    for kind in stream["x-event-types"] + stream["x-control-event-types"]:
        assert f"`{kind}`" in stream["description"], kind
    ingest = doc["paths"]["/api/metrics"]["post"]
    assert ingest["responses"]["422"] == {"$ref": "#/components/responses/Error"}
    assert "application/x-www-form-urlencoded" in ingest["requestBody"]["content"]
    assert doc["paths"]["/api/events"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventPage"
    }


async def test_docs_page_is_self_contained(client: QuartClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = await response.get_data(as_text=True)
    assert "/api/stream" in html and "/api/write" in html and "Reading" in html
    # Offline: nothing loaded from another origin, no scripts at all.
    assert "<script" not in html
    assert not re.search(r"""(?:src|href)=["'](?:https?:)?//""", html), "the docs page loads something remote"
    css = await client.get("/docs.css")
    assert css.status_code == 200 and css.mimetype == "text/css"


def test_openapi_path_converts_converters() -> None:
    assert routing.openapi_path("/api/annotations/<annotation_id>") == "/api/annotations/{annotation_id}"
    assert routing.openapi_path("/a/<int:n>/b/<path:rest>") == "/a/{n}/b/{rest}"


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


async def test_refusals_come_from_each_access_rule(app: Quart, client: QuartClient) -> None:
    """401/403 wherever a credential is needed, 429 on writes that count, 303 for a browser on a page, 503 anywhere."""
    doc = await (await client.get("/openapi.json")).get_json()
    declared = {(op.method, op.path): spec for spec in routing.declarations().values() for op in spec.ops}
    for method, path, op in operations(doc):
        spec = declared[(method, path)]
        answers = set(op["responses"])
        assert {"401", "503"} <= answers, (method, path)  # a bad token is 401 even where none is needed
        if spec.access is None:
            assert op["security"] == [{}], (method, path)
            continue
        assert op["security"] == [{"bearer": []}, {"cookie": []}], (method, path)
        assert "403" in answers, (method, path)
        if method != "get" and not spec.rate_exempt:
            assert "429" in answers, (method, path)  # the per-token write rate
        is_page = method == "get" and not path.startswith(("/api/", "/fragments/"))
        if is_page:
            assert "303" in answers, (method, path)
    # Errors are JSON, or HTML for htmx and for browsers on pages.
    error = doc["components"]["responses"]["Error"]["content"]
    assert set(error) == {"application/json", "text/html"}


async def test_bodies_and_their_form_variants(client: QuartClient) -> None:
    doc = await (await client.get("/openapi.json")).get_json()
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    login = paths["/login"]["post"]["requestBody"]["content"]
    assert list(login) == ["application/x-www-form-urlencoded"]  # a form, never JSON
    assert set(schemas["LoginForm"]["properties"]) == {"token", "next"}
    assert paths["/api/tokens"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TokenCreate"
    }
    for path, method in (("/api/annotations/{annotation_id}", "delete"), ("/api/alerts/rules/{rule_id}", "delete")):
        body = paths[path][method]["requestBody"]
        assert body["required"] is False, path  # a delete's precondition may be left out
        assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Precondition"}
    # A form carries strings: no nulls, a blank optional field is absent, a list is one comma-separated field.
    form = schemas["AnnotationUpdateForm"]
    assert "null" not in str(form) and form["additionalProperties"] is False
    assert "comma" in str(form["properties"]["tags"])
    assert "tags" in schemas["ReadingForm"]["properties"] and "tags" in schemas["RuleCreateForm"]["properties"]
    # Fields that may be left out but not sent as null say so; a stripped field needs a visible character.
    assert "null" not in str(schemas["RuleUpdate"]["properties"]["threshold"])
    assert "pattern" in str(schemas["AnnotationCreate"]["properties"]["tags"])
    # Line protocol: lines that are readings for sure.
    lines = paths["/api/write"]["post"]["requestBody"]["content"]["text/plain"]["schema"]
    assert re.fullmatch(lines["pattern"], "cpu,device=pump-1 usage=97.5\nmem,device=pump-1 value=3\n")
    assert not re.fullmatch(lines["pattern"], "cpu usage=97.5")


async def test_parameters_say_what_the_handlers_accept(make_settings: Any) -> None:
    settings: Settings = make_settings(long_poll_max_wait=7.5, poll_page_size=50)
    app = __import__("app").create_app(settings)
    async with app.test_app():
        doc = await (await app.test_client().get("/openapi.json")).get_json()
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/events"]["get"]["parameters"]}
    # Bounds that are settings are read from the running app's; an empty value means the default.
    assert params["wait"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": 7.5}
    assert params["limit"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 50}
    assert params["topics"]["type"] == "array" and params["topics"]["maxItems"] == 64
    assert SLUG_PATTERN.strip("^$") == routing.SLUG, "the query slug is validation's slug"
    annotations = {p["name"] for p in doc["paths"]["/api/annotations"]["get"]["parameters"]}
    assert {"from", "to", "tag", "limit"} <= annotations and not {"since", "until"} & annotations
    series = {p["name"]: p for p in doc["paths"]["/series/{device}/{metric}"]["get"]["parameters"]}
    assert series["device"]["schema"]["pattern"] == SLUG_PATTERN


def test_stream_events_are_described_one_by_one() -> None:
    """The stream's 200 describes each SSE message: its event name, and its data by type."""
    kinds = {b["properties"]["event"].get("const") for b in EVENT_SCHEMA["oneOf"]} - {None}
    assert kinds == {"ready", "reset", "ping", "status", "bye", "reauth", "skip"}
    ready = next(b for b in EVENT_SCHEMA["oneOf"] if b["properties"]["event"].get("const") == "ready")
    assert ready["properties"]["data"]["contentSchema"]["required"] == ["cursor"]

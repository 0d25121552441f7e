"""The API description: complete (every served route), valid OpenAPI, and a docs page that works offline."""

from __future__ import annotations

import re

from openapi_spec_validator import validate
from quart import Quart

from app.web import openapi, routing

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
    assert set(schemas["Event"]["properties"]) == {"id", "type", "topic", "ts", "data"}
    assert set(schemas["Error"]["properties"]) == {"error", "detail"}
    stream = doc["paths"]["/api/stream"]["get"]
    assert stream["x-event-types"] == ["metric", "annotation", "alert_rule", "alert", "presence"]
    assert stream["x-control-event-types"] == ["ready", "reset", "ping", "status", "bye"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    for kind in ("metric", "annotation", "alert_rule", "alert", "presence", "ready", "reset", "ping", "status", "bye"):
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

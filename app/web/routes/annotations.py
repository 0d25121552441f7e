"""Annotations over HTTP: create, update, delete, list, fetch, revisions.

JSON for API clients; with ``HX-Request`` the writes answer HTML fragments
(the editor after a save, and on a version conflict a fragment that shows
both versions with "keep mine" / "take theirs").
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, render_template, request

from app.auth.access import ANNOTATE, READ
from app.auth.guard import current_identity, require_device_visible
from app.documents.annotations import AnnotationCreate, AnnotationUpdate, form_fields
from app.documents.versioned import Written, etag
from app.errors import BadRequest, Conflict
from app.services import services
from app.validation import now_ms
from app.web.bodies import int_arg, slug_arg
from app.web.htmx import is_htmx
from app.web.responses import NO_STORE, json_response
from app.web.routes.document_views import (
    delete_document,
    delete_routes,
    doc_response,
    document_body,
    if_match,
    live_document,
    revisions_response,
    visible_document,
)
from app.web.routes.readings import TIME, time_arg
from app.web.routing import ANN_ID, BODY_ERRORS, DEVICE, IF_MATCH, METRIC, WRITE_ERRORS, Param, route

bp = Blueprint("annotations", __name__)

NOUN = "annotation"
MAX_LIST = 1000


async def _editor(doc: dict[str, Any], status: int = 200) -> Response:
    html = await render_template("_annotation_form.html", a=doc)
    return Response(
        html, status=status, content_type="text/html; charset=utf-8", headers={"ETag": etag(doc["version"])}
    )


async def _written(written: Written, status: int = 200) -> Response:
    if is_htmx():
        return await _editor(written.doc, status)
    location = f"/api/annotations/{written.doc['id']}" if status == 201 else None
    return doc_response(written.doc, status, location)


@route(
    bp,
    "GET",
    "/api/annotations",
    access=READ,
    summary="List annotations",
    tag="annotations",
    description="Newest first. `from` after `to` is a 400.",
    params=(
        DEVICE,
        METRIC,
        Param("from", description="from this time: RFC 3339, epoch ms, or relative (-6h, now-15m)", schema=TIME),
        Param("to", description="up to this time: RFC 3339, epoch ms, relative, or now", schema=TIME),
        Param("tag", description="only annotations carrying this tag"),
        Param(
            "limit",
            type="integer",
            description="most annotations (default 100)",
            schema={"minimum": 1, "maximum": 1000},
        ),
    ),
    errors=(400,),
)
async def list_annotations() -> Response:
    svc = services()
    device, metric, tag = slug_arg("device"), slug_arg("metric"), request.args.get("tag") or None
    now = now_ms()
    start, end = time_arg("from", now), time_arg("to", now)
    if start is not None and end is not None and start > end:
        raise BadRequest("query parameter 'from' must not be after 'to'", code="bad_query")
    limit = int_arg("limit", 100, 1, MAX_LIST)
    # The cursor is taken first: a write racing this read is then replayed
    # to the client, never missed (its version tells the newer copy apart).
    cursor = await svc.log.head()
    found = await svc.annotations.search(device=device, metric=metric, start=start, end=end, tag=tag, limit=limit)
    found = [a for a in found if current_identity().sees_device(a["device"])]  # a scoped token's devices only
    return json_response({"annotations": found, "cursor": cursor}, headers=NO_STORE)


@route(
    bp,
    "POST",
    "/api/annotations",
    access=ANNOTATE,
    summary="Create an annotation",
    tag="annotations",
    description="201 with `id`, `version: 1`, ETag. `ts_end` before `ts` is a 422. With HX-Request the answer is the "
    "editor fragment.",
    body="AnnotationCreate",
    ok=201,
    htmx=True,
    errors=BODY_ERRORS,
)
async def create() -> Response:
    _, data = await document_body(AnnotationCreate, form_fields, update=False)
    require_device_visible(data.device)
    actor = current_identity().actor(data.author)  # the caller; a body author only counts with auth off
    return await _written(await services().annotations.create(data, actor), 201)


@route(
    bp,
    "GET",
    "/api/annotations/<annotation_id>",
    access=READ,
    summary="One annotation",
    tag="annotations",
    description="With HX-Request: its editor fragment.",
    params=(ANN_ID,),
    htmx=True,
    errors=(404, 410),
)
async def fetch(annotation_id: str) -> Response:
    doc = await live_document(services().annotations, annotation_id, NOUN)
    if is_htmx():
        return await _editor(doc)
    return doc_response(doc)


@route(
    bp,
    "GET",
    "/api/annotations/<annotation_id>/revisions",
    access=READ,
    summary="An annotation's revisions",
    tag="annotations",
    description="Stays readable once the annotation is deleted (its history, until the tombstone expires).",
    params=(ANN_ID,),
    errors=(404,),
)
async def revisions(annotation_id: str) -> Response:
    return await revisions_response(services().annotations, annotation_id, NOUN)


@route(
    bp,
    "POST",
    "/api/annotations/<annotation_id>",
    access=ANNOTATE,
    summary="Update an annotation",
    tag="annotations",
    description="With `version` (body) or If-Match: applied only if it matches, else 409 with the current "
    "annotation. Without: last write wins. The device cannot change, and `ts_end` may not be before `ts`: 422. "
    "With HX-Request the answer is the editor fragment (or, on a conflict, both versions).",
    params=(ANN_ID, IF_MATCH),
    body="AnnotationUpdate",
    htmx=True,
    errors=WRITE_ERRORS,
)
async def update(annotation_id: str) -> Response:
    await visible_document(services().annotations, annotation_id, NOUN)
    body, patch = await document_body(AnnotationUpdate, form_fields, update=True)
    expected = if_match(patch.version)
    try:
        written = await services().annotations.update(
            annotation_id, patch, expected, current_identity().actor(patch.author)
        )
    except Conflict as exc:
        if is_htmx() and exc.code == "conflict":
            return await _conflict(body, exc.body["current"])
        raise
    return await _written(written)


async def _conflict(mine: dict[str, Any], theirs: dict[str, Any]) -> Response:
    """Both versions side by side; "keep mine" re-posts mine on top of theirs."""
    mine = {k: v for k, v in mine.items() if k != "version"}
    html = await render_template("_annotation_conflict.html", mine=mine, theirs=theirs)
    return Response(
        html, status=409, content_type="text/html; charset=utf-8", headers={"ETag": etag(theirs["version"])}
    )


@delete_routes(
    bp,
    "/api/annotations/<annotation_id>",
    access=ANNOTATE,
    summary="Delete an annotation",
    tag="annotations",
    description="Same version rules as an update; the body is optional. With HX-Request the answer is empty HTML.",
    params=(ANN_ID, IF_MATCH),
    htmx=True,
)
async def delete(annotation_id: str) -> Response:
    written = await delete_document(services().annotations, annotation_id, NOUN)
    if is_htmx():
        return Response("", status=200, content_type="text/html; charset=utf-8")
    return doc_response(written.doc)

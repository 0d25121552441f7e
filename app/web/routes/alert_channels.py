"""Notification channels over HTTP: admins manage them, read their delivery logs, send a test.

``POST /api/alerts/channels`` answers 201 with the channel and its secret
(shown this once; ``rotate_secret: true`` on an update makes and shows a new
one). A URL that is malformed or points at a refused address is a 422
naming ``url`` (``app/alerts/addresses.py``). Channel writes are
last-write-wins (no versions: a channel is one admin's configuration, not a
shared document).
"""

from __future__ import annotations

from quart import Blueprint, Response

from app.alerts.channels import ChannelCreate, ChannelUpdate, public
from app.auth.access import ADMIN
from app.auth.guard import current_identity
from app.documents.versioned import check_id
from app.errors import NotFound
from app.services import services
from app.validation import parse_model
from app.web.bodies import json_or_form, optional_body
from app.web.responses import NO_STORE, json_response
from app.web.routing import BODY_ERRORS, DOC_ID, Param, route

bp = Blueprint("alert_channels", __name__)

NOUN = "channel"
CHANNEL_ID = Param("channel_id", "path", description="a channel id", required=True, schema=DOC_ID)
FIELDS = (
    "Body: name, kind (webhook | chat), url (http/https; loopback, link-local and metadata addresses refused "
    "unless LIVEDASH_WEBHOOK_ALLOW_NETWORKS allows them), secret (16+ characters; generated when left out), enabled."
)


async def _channel(channel_id: str) -> dict[str, object]:
    channel = await services().alerting.channels.get(check_id(channel_id, NOUN))
    if channel is None:
        raise NotFound(f"no channel {channel_id!r}")
    return channel


@route(bp, "GET", "/api/alerts/channels", access=ADMIN, summary="List notification channels", tag="alerts")
async def list_channels() -> Response:
    channels = await services().alerting.channels.all()
    return json_response({"channels": [public(c) for c in channels]}, headers=NO_STORE)


@route(
    bp,
    "POST",
    "/api/alerts/channels",
    access=ADMIN,
    summary="Create a notification channel",
    tag="alerts",
    description=FIELDS + " The answer carries the secret, this once.",
    body="ChannelCreate",
    ok=201,
    errors=BODY_ERRORS,
)
async def create_channel() -> Response:
    body, _ = await json_or_form()
    data = parse_model(ChannelCreate, body)
    channel = await services().alerting.channels.create(data, current_identity().actor())
    return json_response(channel, 201, headers={"Location": f"/api/alerts/channels/{channel['id']}", **NO_STORE})


@route(
    bp,
    "GET",
    "/api/alerts/channels/<channel_id>",
    access=ADMIN,
    summary="One notification channel",
    tag="alerts",
    params=(CHANNEL_ID,),
    errors=(404,),
)
async def fetch_channel(channel_id: str) -> Response:
    return json_response(public(await _channel(channel_id)), headers=NO_STORE)


@route(
    bp,
    "POST",
    "/api/alerts/channels/<channel_id>",
    access=ADMIN,
    summary="Update a notification channel",
    tag="alerts",
    description=FIELDS + " Fields left out stay; rotate_secret: true makes a new secret (shown in the answer).",
    params=(CHANNEL_ID,),
    body="ChannelUpdate",
    errors=(*BODY_ERRORS, 404),
)
async def update_channel(channel_id: str) -> Response:
    await _channel(channel_id)
    body, _ = await json_or_form()
    patch = parse_model(ChannelUpdate, body)
    channel = await services().alerting.channels.update(channel_id, patch, current_identity().actor())
    if channel is None:
        raise NotFound(f"no channel {channel_id!r}")
    return json_response(channel if (patch.rotate_secret or patch.secret) else public(channel), headers=NO_STORE)


@route(
    bp,
    "POST",
    "/api/alerts/channels/<channel_id>/delete",
    access=ADMIN,
    summary="Delete a notification channel",
    tag="alerts",
    description="Deliveries still queued for it are dropped; rules naming it keep the id and notify nothing there. "
    "A body, if any, is ignored.",
    params=(CHANNEL_ID,),
    errors=(400, 404, 415),
)
async def delete_channel(channel_id: str) -> Response:
    await optional_body()
    if not await services().alerting.channels.delete(check_id(channel_id, NOUN)):
        raise NotFound(f"no channel {channel_id!r}")
    return json_response({"deleted": channel_id})


@route(
    bp,
    "GET",
    "/api/alerts/channels/<channel_id>/log",
    access=ADMIN,
    summary="A channel's delivery log",
    tag="alerts",
    description="The last LIVEDASH_WEBHOOK_LOG_SIZE attempts, newest first: at, key (idempotency key), event, "
    "attempt, status (HTTP, or null), error (null when delivered), ok, final (no more attempts follow).",
    params=(CHANNEL_ID,),
    errors=(404,),
)
async def channel_log(channel_id: str) -> Response:
    await _channel(channel_id)
    return json_response({"attempts": await services().alerting.channels.log(channel_id)}, headers=NO_STORE)


@route(
    bp,
    "POST",
    "/api/alerts/channels/<channel_id>/test",
    access=ADMIN,
    summary="Send a test notification",
    tag="alerts",
    description="One attempt now, with a made-up transition marked test; the answer is the logged attempt. A body, "
    "if any, is ignored.",
    params=(CHANNEL_ID,),
    errors=(400, 404, 415),
)
async def test_channel(channel_id: str) -> Response:
    await optional_body()
    channel = await _channel(channel_id)
    entry = await services().alerting.deliverer.send_test(dict(channel), current_identity().actor().name)
    return json_response(entry, headers=NO_STORE)

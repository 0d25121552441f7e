"""The least an ASGI server can be asked for: every GET of ``/sse`` an endless SSE response.

No framework, no storage: what a server itself costs per stream open and
per open stream (the floor under livedash and the naive peer), for the
``bare-hypercorn`` and ``bare-uvicorn`` peers. ``/healthz`` answers 200 and a
POST 202 (nothing is published: the storm probes only time the answer).
"""

from __future__ import annotations

from typing import Any

Message = dict[str, Any]


async def app(scope: Message, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] != "/sse" or scope["method"] != "GET":
        status = 202 if scope["method"] == "POST" else 200
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
    while (await receive())["type"] != "http.disconnect":
        pass

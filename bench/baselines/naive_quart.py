"""The SSE server most people would write in a day: Quart + hypercorn, done plainly.

Honest, not sabotaged: it uses uvloop (the bench starts it with the same
hypercorn flags as livedash), one Redis pub/sub connection per process (not
one per client), and drops a client whose queue is full instead of growing
without bound. What makes it "naive" is the per-client work the issue names:

* an ``asyncio.Queue`` per client, fed by a broadcast loop;
* the event ``json.dumps``-ed and SSE-framed once per client;
* one ASGI send (one generator ``yield``) per event.

Fan-out goes through Redis pub/sub (``PUBLISH`` on ``POST /publish``), so two
hypercorn workers deliver to each other's clients, like livedash does. It
keeps no log and no latest values: it does strictly less work per reading.
A batch (a JSON list) is published reading by reading in one pipeline.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from quart import Quart, Response, request
from redis.asyncio import Redis

CHANNEL = os.environ.get("NAIVE_CHANNEL", "naive-bench")
QUEUE_SIZE = 1024

app = Quart(__name__)
app.config["RESPONSE_TIMEOUT"] = None
clients: set[asyncio.Queue[dict[str, Any]]] = set()
state: dict[str, Any] = {}


async def broadcast_forever(redis: Redis) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(CHANNEL)
    try:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            reading = json.loads(message["data"])
            for queue in tuple(clients):
                try:
                    queue.put_nowait(reading)
                except asyncio.QueueFull:
                    clients.discard(queue)  # a slow client: stop feeding it
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


@app.before_serving
async def _open() -> None:
    redis = Redis.from_url(os.environ["REDIS_URL"])
    state["redis"] = redis
    state["task"] = asyncio.create_task(broadcast_forever(redis))


@app.after_serving
async def _close() -> None:
    state["task"].cancel()
    await asyncio.gather(state["task"], return_exceptions=True)
    await state["redis"].aclose()


@app.post("/publish")
async def publish() -> tuple[dict[str, Any], int]:
    body = await request.get_json()
    readings = body if isinstance(body, list) else [body]
    async with state["redis"].pipeline(transaction=False) as pipe:
        for reading in readings:
            pipe.publish(CHANNEL, json.dumps(reading))
        await pipe.execute()
    return {"accepted": len(readings)}, 202


@app.get("/stream")
async def stream() -> Response:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_SIZE)
    clients.add(queue)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                reading = await queue.get()
                yield f"event: metric\ndata: {json.dumps(reading)}\n\n".encode()
        finally:
            clients.discard(queue)

    response = Response(events(), content_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    response.timeout = None
    return response


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    # What a load balancer polls; the storm scenarios time it during a reconnect storm.
    return {"status": "ok"}

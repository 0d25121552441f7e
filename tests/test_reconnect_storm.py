"""A reconnect storm: many streams opening at once share their reads, and lose nothing by it.

After a deploy every page comes back within a second or two. Each stream open
used to look up its token, read the log's state (two round trips) and read the
log twice more, one by one: thousands of round trips queueing for the pool,
some answered 503. Now the token lookups of one event-loop turn are one MGET,
concurrent opens share one read of the log's state that began after they
asked (``app/storage/batching.py``), and a fresh stream reads the log only if
the hub has already passed its starting point.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import redis as sync_redis
from redis.asyncio import Redis

from app.storage.batching import BatchedGet, SharedRead

from .servers import AppServer
from .sse_client import open_stream, payload
from .test_raw_stream import streams_open
from .waiting import async_wait_until

ADMIN = "storm-admin-token-0123456789abcdef"
STREAMS = 300


def calls(client: sync_redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_storm_of_stream_opens_shares_its_reads(
    start_server: Callable[..., AppServer], sync_client: sync_redis.Redis
) -> None:
    server = start_server(
        LIVEDASH_AUTH="on", SECRET_KEY="s" * 32, LIVEDASH_ADMIN_TOKEN=ADMIN, LIVEDASH_STREAMS_PER_TOKEN=str(STREAMS)
    )
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        made = await http.post("/api/tokens", json={"role": "viewer", "name": "storm"})
        token = made.json()["token"]
        posted = await http.post("/api/metrics", json={"device": "d", "metric": "m", "value": 1})
        assert posted.status_code == 202
    before = {c: calls(sync_client, c) for c in ("mget", "get", "xinfo|stream", "xrange")}
    limits = httpx.Limits(max_connections=STREAMS + 10)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:

        async def one() -> str:
            async with http.stream(
                "GET", "/api/stream", headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
            ) as response:
                assert response.status_code == 200, await response.aread()
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        return line.removeprefix("event: ")
            return ""

        firsts = await asyncio.gather(*(one() for _ in range(STREAMS)))
    assert firsts == ["ready"] * STREAMS
    used = {c: calls(sync_client, c) - n for c, n in before.items()}
    # One lookup per stream was 300 GETs; one state read per stream 300 XINFOs; two log reads 600 XRANGEs.
    assert used["get"] + used["mget"] < STREAMS / 3, used
    assert used["xinfo|stream"] < STREAMS / 3, used
    assert used["xrange"] < STREAMS / 3, used


async def test_a_resumed_stream_in_a_storm_still_gets_what_it_missed(server: AppServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        first = await http.post("/api/metrics", json={"device": "d", "metric": "m", "value": 1})
        cursor = first.json()["cursor"]
        for value in (2, 3):
            await http.post("/api/metrics", json={"device": "d", "metric": "m", "value": value})

    async def resumed() -> list[float]:
        async with open_stream(server.url, headers={"Last-Event-ID": cursor}) as stream:
            events = await stream.take(2, types={"metric"}, within=10)
            return [payload(e)["data"]["value"] for e in events]

    assert await asyncio.gather(*(resumed() for _ in range(20))) == [[2.0, 3.0]] * 20


async def test_shared_reads_begin_after_their_callers_asked() -> None:
    state = {"value": 0, "reads": 0}
    gate = asyncio.Event()

    async def read() -> int:
        state["reads"] += 1
        seen = state["value"]
        await gate.wait()
        return seen

    shared = SharedRead(read)
    first = [asyncio.create_task(shared.get()) for _ in range(50)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the read is under way, having seen value 0
    state["value"] = 1  # a write these callers did not see...
    later = [asyncio.create_task(shared.get()) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*first)) == {0}
    assert set(await asyncio.gather(*later)) == {1}  # ...which the later ones, having asked after it, do
    assert state["reads"] == 2


async def test_batched_gets_are_one_mget_and_never_older_than_the_ask(redis_url: str, key_prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    sync = sync_redis.Redis.from_url(redis_url)
    try:
        batched = BatchedGet(redis)
        keys = [f"{key_prefix}k{i}" for i in range(100)]
        sync.mset({k: f"v{i}" for i, k in enumerate(keys)})
        before = calls(sync, "mget")
        values = await asyncio.gather(*(batched.get(k) for k in keys + keys))
        assert values == [f"v{i}".encode() for i in range(100)] * 2
        assert calls(sync, "mget") - before == 1
        # A key deleted before it is asked for is gone for the asker, batch or no batch.
        sync.delete(keys[0])
        assert await batched.get(keys[0]) is None
    finally:
        sync.delete(*keys)
        sync.close()
        await redis.aclose()


async def test_the_per_token_stream_limit_holds_in_a_storm(start_server: Callable[..., AppServer]) -> None:
    """Every open is checked against the limit before any of them subscribes: each allowed one claims its slot."""
    server = start_server(
        LIVEDASH_AUTH="on", SECRET_KEY="s" * 32, LIVEDASH_ADMIN_TOKEN=ADMIN, LIVEDASH_STREAMS_PER_TOKEN="20"
    )
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        token = (await http.post("/api/tokens", json={"role": "viewer", "name": "storm"})).json()["token"]
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    hold = asyncio.Event()
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=100)) as http:

        async def one() -> int:
            async with http.stream("GET", "/api/stream", headers=headers) as response:
                if response.status_code == 200:
                    await hold.wait()  # keep it open until every attempt has its answer
                return response.status_code

        attempts = [asyncio.create_task(one()) for _ in range(60)]

        async def refused() -> bool:
            return sum(1 for t in attempts if t.done()) >= 40

        await async_wait_until(refused, timeout=20, what="40 answers 429 while 20 streams stay open")
        hold.set()
        statuses = await asyncio.gather(*attempts)
    assert sorted(statuses) == [200] * 20 + [429] * 40

    async def all_closed() -> bool:
        # The slots come back as the server notices each client leaving.
        return streams_open(server, ADMIN) == 0

    for _ in range(21):  # more than the limit, one after another: nothing leaked
        await async_wait_until(all_closed, timeout=10, what="the previous streams released")
        async with open_stream(server.url, headers={"Authorization": f"Bearer {token}"}) as stream:
            assert (await stream.next()).event == "ready"

"""The SSE stream end to end: a real hypercorn process, real clients (httpx-sse, curl)."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import pytest

from .servers import AppServer
from .sse_client import open_stream, payload
from .waiting import async_wait_until, wait_until

TS = 1_790_000_000_000


def post_readings(base_url: str, values: list[float], device: str = "pump-1", metric: str = "temp") -> list[str]:
    """POST one reading per value (each its own request); returns the event ids in order."""
    ids = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for i, value in enumerate(values):
            response = client.post(
                "/api/metrics", json={"device": device, "metric": metric, "value": value, "ts": TS + i}
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["cursor"])
    return ids


def post_batch(base_url: str, readings: list[dict[str, Any]]) -> str:
    response = httpx.post(base_url + "/api/metrics", json=readings, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["cursor"])


async def test_stream_headers_and_opening(server: AppServer) -> None:
    async with open_stream(server.url) as stream:
        headers = stream.source.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert "no-cache" in headers["cache-control"]
        assert headers["x-accel-buffering"] == "no"
        ready = await stream.next()
        assert ready.event == "ready"
        assert ready.id == payload(ready)["cursor"]
        assert ready.retry is not None and 2000 <= ready.retry <= 5000


async def test_posted_readings_arrive_in_order(server: AppServer) -> None:
    async with open_stream(server.url) as stream:
        await stream.next()  # ready
        ids = await asyncio.to_thread(post_readings, server.url, [1.0, 2.0, 3.0])
        events = await stream.take(3)
    assert [e.id for e in events] == ids
    assert [e.event for e in events] == ["metric"] * 3
    bodies = [payload(e) for e in events]
    assert [b["data"]["value"] for b in bodies] == [1.0, 2.0, 3.0]
    assert all(b["type"] == "metric" and b["topic"] == "device/pump-1" for b in bodies)
    assert [b["id"] for b in bodies] == ids


async def test_keepalive_is_a_visible_event(server: AppServer) -> None:
    async with open_stream(server.url) as stream:
        ready = await stream.next()
        ping = await stream.next(within=5)
        assert ping.event == "ping" and "ts" in payload(ping)
        assert ping.id == ready.id  # a ping carries no id, so Last-Event-ID stays put


async def test_resume_replays_exactly_what_was_missed(server: AppServer) -> None:
    async with open_stream(server.url) as stream:
        await stream.next()
        first = await asyncio.to_thread(post_readings, server.url, [1.0, 2.0])
        seen = await stream.take(2)
    assert [e.id for e in seen] == first
    missed = await asyncio.to_thread(post_readings, server.url, [3.0, 4.0, 5.0])
    async with open_stream(server.url, headers={"Last-Event-ID": seen[-1].id}) as stream:
        ready = await stream.next()
        assert ready.event == "ready" and ready.id == seen[-1].id
        replayed = await stream.until("ping")
    assert [e.id for e in replayed] == missed
    assert [payload(e)["data"]["value"] for e in replayed] == [3.0, 4.0, 5.0]


async def test_resume_with_query_parameter(server: AppServer) -> None:
    ids = await asyncio.to_thread(post_readings, server.url, [1.0, 2.0, 3.0])
    async with open_stream(server.url, last_event_id=ids[0]) as stream:
        replayed = await stream.until("ping")
    assert [e.id for e in replayed] == ids[1:]


@pytest.mark.parametrize("bad_id", ["not-an-id", "99999999999999-0"])
async def test_unknown_id_gets_reset(server: AppServer, bad_id: str) -> None:
    await asyncio.to_thread(post_readings, server.url, [1.0])
    async with open_stream(server.url, headers={"Last-Event-ID": bad_id}) as stream:
        first = await stream.next()
        assert first.event == "reset"
        assert payload(first)["reason"] in ("malformed-id", "unknown-id")
        assert first.id == payload(first)["cursor"]


async def test_expired_id_gets_reset(start_server: Callable[..., AppServer]) -> None:
    server = start_server(LIVEDASH_EVENT_LOG_MAXLEN="100")
    first = post_batch(server.url, [{"device": "d", "metric": "m", "value": 0, "ts": TS}])
    # MAXLEN ~ trims whole stream nodes (100 entries each by default): write well past it.
    for _ in range(6):
        post_batch(server.url, [{"device": "d", "metric": "m", "value": i, "ts": TS + i} for i in range(200)])
    async with open_stream(server.url, headers={"Last-Event-ID": first}) as stream:
        reset = await stream.next()
    assert reset.event == "reset" and payload(reset)["reason"] == "expired-id"


async def test_topic_filter_with_wildcards(server: AppServer) -> None:
    async with open_stream(server.url, topics="device/line-2/*,device/solo") as stream:
        await stream.next()
        for device in ["other", "line-2", "solo", "solo-2"]:
            await asyncio.to_thread(post_readings, server.url, [1.0], device=device)
        await asyncio.to_thread(post_readings, server.url, [1.0], device="solo")
        # The log is in order and the last reading is solo's: by the time the stream has
        # two log events, anything else that matched would have come before the second.
        # (Not "until the next ping": under load the posts outlast a keep-alive interval.)
        got = await stream.take(2)
    assert [payload(e)["topic"] for e in got] == ["device/solo", "device/solo"]


async def test_reading_on_one_process_reaches_a_stream_on_another(start_server: Callable[..., AppServer]) -> None:
    one, two = start_server(), start_server()
    async with open_stream(two.url) as stream:
        await stream.next()
        ids = await asyncio.to_thread(post_readings, one.url, [7.0, 8.0])
        got = await stream.take(2)
    assert [e.id for e in got] == ids


async def test_two_workers_share_the_log(start_server: Callable[..., AppServer]) -> None:
    server = start_server(workers=2)
    streams_ids: list[list[str]] = []
    for _ in range(4):  # several connections, so both workers very likely serve one
        async with open_stream(server.url) as stream:
            await stream.next()
            ids = await asyncio.to_thread(post_readings, server.url, [1.0, 2.0])
            streams_ids.append([e.id for e in await stream.take(2)])
            assert streams_ids[-1] == ids


async def test_polling_and_streaming_give_identical_sequences(server: AppServer) -> None:
    start = httpx.get(server.url + "/api/events").json()["cursor"]
    async with open_stream(server.url) as stream:
        await stream.next()
        await asyncio.to_thread(post_readings, server.url, [1.0, 2.0], device="a")
        await asyncio.to_thread(post_readings, server.url, [3.0], device="b")
        await asyncio.to_thread(
            post_batch, server.url, [{"device": "c", "metric": "m", "value": i, "ts": TS + i} for i in range(5)]
        )
        streamed = [payload(e) for e in await stream.take(8)]
    polled = httpx.get(server.url + "/api/events", params={"since": start}).json()
    assert polled["events"] == streamed
    assert polled["cursor"] == streamed[-1]["id"]


async def test_alternating_stream_and_poll_loses_nothing(server: AppServer) -> None:
    """Stream a while, poll from its last id, stream again from the poll's cursor: every id once."""
    collected: list[str] = []
    async with open_stream(server.url) as stream:
        await stream.next()
        sent = await asyncio.to_thread(post_readings, server.url, [1.0, 2.0])
        collected += [e.id for e in await stream.take(2)]
    sent += await asyncio.to_thread(post_readings, server.url, [3.0, 4.0])
    polled = httpx.get(server.url + "/api/events", params={"since": collected[-1]}).json()
    collected += [e["id"] for e in polled["events"]]
    sent += await asyncio.to_thread(post_readings, server.url, [5.0])
    async with open_stream(server.url, last_event_id=polled["cursor"]) as stream:
        collected += [e.id for e in await stream.until("ping")]
    assert collected == sent


async def streams_open(client: httpx.AsyncClient) -> float | None:
    """The server's ``livedash_streams_open`` (open streams and waiting long polls), from /metrics."""
    text = (await client.get("/metrics")).text
    match = re.search(r"^livedash_streams_open (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


async def test_long_poll_answers_when_an_event_arrives(server: AppServer) -> None:
    cursor = httpx.get(server.url + "/api/events").json()["cursor"]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        waiting = asyncio.create_task(client.get("/api/events", params={"since": cursor, "wait": "20"}))

        async def poll_waits() -> bool:
            return await streams_open(client) == 1

        # The poll is subscribed and waiting, so the event below arrives during the wait, not before it.
        await async_wait_until(poll_waits, timeout=10, what="the long poll to wait on the server")
        assert not waiting.done()
        ids = await asyncio.to_thread(post_readings, server.url, [9.0])
        response = await asyncio.wait_for(waiting, 10)
    body = response.json()
    assert [e["id"] for e in body["events"]] == ids and body["cursor"] == ids[0]


async def test_long_poll_times_out_empty(server: AppServer) -> None:
    cursor = httpx.get(server.url + "/api/events").json()["cursor"]
    body = httpx.get(server.url + "/api/events", params={"since": cursor, "wait": "0.5"}, timeout=10).json()
    assert body == {"events": [], "cursor": cursor}


async def test_poll_with_expired_since_gives_reset_marker(server: AppServer) -> None:
    body = httpx.get(server.url + "/api/events", params={"since": "garbage"}).json()
    assert body["reset"] is True
    assert [e["type"] for e in body["events"]] == ["reset"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
async def test_curl_follows_the_stream(server: AppServer) -> None:
    proc = subprocess.Popen(
        ["curl", "-sN", "--max-time", "20", server.url + "/api/stream"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        lines.append(await asyncio.to_thread(proc.stdout.readline))  # ': livedash' + retry come first
        ids = await asyncio.to_thread(post_readings, server.url, [42.0])

        def read_until_event() -> bool:
            assert proc.stdout is not None
            lines.append(proc.stdout.readline())
            return any(line.startswith("data: ") and ids[0] in line for line in lines)

        await asyncio.to_thread(wait_until, read_until_event, 10.0, 0.0, "the metric event in curl's output")
        assert f"id: {ids[0]}\n" in lines and "event: metric\n" in lines
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_client_that_never_reads_is_dropped_and_others_keep_receiving(
    start_server: Callable[..., AppServer],
) -> None:
    server = start_server(LIVEDASH_STREAM_QUEUE_SIZE="64")
    proc = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
    # A client that sends its request, then never reads a byte.
    stuck = socket.create_connection(("127.0.0.1", server.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(f"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    try:
        async with open_stream(server.url) as healthy:
            await healthy.next()
            rss_before = proc.memory_info().rss
            tags = {f"k{i}": "x" * 100 for i in range(16)}  # ~2 KiB per event
            last = ""
            for _ in range(15):
                batch = [{"device": "d", "metric": "m", "value": i, "ts": TS + i, "tags": tags} for i in range(1000)]
                last = await asyncio.to_thread(post_batch, server.url, batch)
                # The healthy client reads everything as it goes.
                while True:
                    event = await healthy.next()
                    if event.id == last:
                        break

            def dropped() -> bool:
                text = httpx.get(server.url + "/metrics").text
                return "livedash_streams_dropped_total 1.0" in text

            await asyncio.to_thread(wait_until, dropped, 10.0, 0.1, "the stuck client to be dropped")
            rss_growth = proc.memory_info().rss - rss_before
        # ~30 MiB of events went out; a stuck client may hold only its bounded queue.
        assert rss_growth < 20 * 1024 * 1024, f"server grew by {rss_growth / 2**20:.1f} MiB"
    finally:
        stuck.close()


async def test_shutdown_ends_open_streams(start_server: Callable[..., AppServer]) -> None:
    server = start_server()
    async with open_stream(server.url) as stream:
        await stream.next()
        stopping = asyncio.create_task(asyncio.to_thread(server.stop, 15.0))
        with pytest.raises((httpx.HTTPError, StopAsyncIteration)):
            for _ in range(1000):
                event = await stream.next(within=10)
                if event.event == "bye":
                    raise StopAsyncIteration
        await async_wait_until(lambda: _done(stopping), timeout=15, what="server to exit")


async def _done(task: asyncio.Task[Any]) -> bool:
    return task.done()


async def test_html_flavour_sends_escaped_fragments(server: AppServer) -> None:
    async with open_stream(server.url, format="html") as stream:
        ready = await stream.next()
        assert ready.event == "ready"
        response = httpx.post(
            server.url + "/api/metrics",
            json={"device": "pump-1", "metric": "temp", "value": 21.5, "ts": TS, "unit": "<b>x"},
        )
        [event] = await stream.take(1)
    assert event.event == "metric" and event.id == response.json()["cursor"]
    assert 'hx-swap-oob="true"' in event.data
    assert "&lt;b&gt;x" in event.data and "<b>x" not in event.data
    assert "21.5" in event.data


async def test_polling_in_html_gives_the_streams_fragments(server: AppServer) -> None:
    """/api/events?format=html: each event keeps its JSON data and carries the stream's fragment as html."""
    cursor = post_readings(server.url, [7.5])[0]
    note = httpx.post(
        server.url + "/api/annotations", json={"device": "pump-1", "text": "<i>seal</i>", "ts": TS}, timeout=5
    )
    assert note.status_code == 201, note.text
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        page = (await client.get("/api/events", params={"since": "0-0", "format": "html"})).json()
        async with open_stream(server.url, format="html", last_event_id="0-0") as stream:
            streamed = await stream.take(2)
        bad = await client.get("/api/events", params={"format": "xml"})
    metric, annotation = page["events"]
    assert metric["id"] == cursor and metric["data"]["value"] == 7.5
    assert [metric["html"], annotation["html"]] == [e.data for e in streamed]
    assert 'id="value--pump-1--temp"' in metric["html"] and 'hx-swap-oob="true"' in metric["html"]
    assert f'id="note--{note.json()["id"]}"' in annotation["html"]
    assert "&lt;i&gt;seal&lt;/i&gt;" in annotation["html"]
    assert bad.status_code == 400 and bad.json()["error"] == "bad_query"


async def test_a_burst_of_clients_queues_for_redis_instead_of_failing(start_server: Callable[..., AppServer]) -> None:
    """More concurrent requests than Redis connections: they wait for one, none answers 503."""
    server = start_server(LIVEDASH_REDIS_POOL_SIZE="3")
    [start] = await asyncio.to_thread(post_readings, server.url, [0.0])

    async def resume_and_read() -> str:
        async with open_stream(server.url, last_event_id=start) as stream:
            ready = await stream.next(within=20)
            assert ready.event == "ready", ready
            return (await stream.take(1, within=20))[0].id

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        readers = [asyncio.create_task(resume_and_read()) for _ in range(40)]
        posts = await asyncio.gather(
            *[client.post("/api/metrics", json={"device": "burst", "metric": "m", "value": i}) for i in range(20)]
        )
        assert [r.status_code for r in posts] == [202] * 20
        first_ids = await asyncio.gather(*readers)
    assert set(first_ids) == {posts_first_id(posts)}


def posts_first_id(posts: list[httpx.Response]) -> str:
    return min((str(r.json()["cursor"]) for r in posts), key=lambda i: tuple(map(int, i.split("-"))))

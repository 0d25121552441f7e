"""Presence: heartbeats, leave, expiry, snapshots; exact event sequences.

In-process tests use the Quart test client on a real Redis; the end-to-end
test runs two real server processes on one Redis and watches the SSE stream.
Timing-sensitive tests wait on conditions (a heartbeat key's remaining TTL,
a count of heartbeats sent), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httpx
import orjson
import pytest
import redis as sync_redis
from quart import Quart
from redis.asyncio import Redis

from app import create_app
from app.documents.versioned import Actor
from app.presence import Heartbeat, PresenceStore, tab_id
from app.services import services_of
from app.settings import Settings
from app.storage.keyspace import Keys

from .servers import AppServer
from .sse_client import open_stream, payload
from .types import QuartClient
from .waiting import async_wait_until

ROOM = "device:pump-1"
TOPIC = f"room/{ROOM}"


def new_session() -> str:
    return uuid.uuid4().hex


def presence_keys(sync_client: sync_redis.Redis, key_prefix: str) -> list[bytes]:
    return list(sync_client.scan_iter(match=f"{key_prefix}presence:*", count=1000))


def logged(sync_client: sync_redis.Redis, key_prefix: str) -> list[dict[str, Any]]:
    """Every presence event in the log, as ``data`` dicts, in order."""
    # redis-py's stubs allow for a pipeline's None; a plain client returns the list.
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], sync_client.xrange(f"{key_prefix}events"))
    return [orjson.loads(fields[b"data"]) for _id, fields in entries if fields[b"type"] == b"presence"]


def brief(data: dict[str, Any]) -> tuple[Any, ...]:
    """The part of an event a sequence assertion cares about."""
    return (data["action"], data["tab"], data["user"], data["state"], data["tabs"], data.get("reason"))


@pytest.fixture
async def fast_app(make_settings: Callable[..., Settings]) -> AsyncIterator[Quart]:
    """An app whose presence runs on a short clock: life 1.4 s (0.4 s TTL + 1 s grace), 50 ms sweeps."""
    settings = make_settings(
        presence_heartbeat_interval=0.2, presence_ttl=0.4, presence_grace=1.0, presence_sweep_interval=0.05
    )
    application = create_app(settings)
    async with application.test_app():
        yield application


@pytest.fixture
def fast_client(fast_app: Quart) -> QuartClient:
    return fast_app.test_client()


# --- heartbeat, refresh, update, leave: responses and the log ------------------


async def test_join_refresh_update_leave(client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str) -> None:
    s = new_session()
    tab = tab_id(s)
    first = await client.post("/api/presence", json={"room": ROOM, "session": s, "user": "ana"})
    assert first.status_code == 200
    body = await first.get_json()
    assert body["action"] == "join" and body["tab"] == tab and body["topic"] == TOPIC and body["id"]
    assert body["heartbeat_ms"] == 10_000 and body["ttl_ms"] == 20_000

    again = await (await client.post("/api/presence", json={"room": ROOM, "session": s, "user": "ana"})).get_json()
    assert again["action"] == "refresh" and again["id"] is None
    edit = {"room": ROOM, "session": s, "user": "ana", "state": "editing:a-17"}
    assert (await (await client.post("/api/presence", json=edit)).get_json())["action"] == "update"
    assert (await (await client.post("/api/presence", json=edit)).get_json())["action"] == "refresh"

    left = await (await client.post("/api/presence/leave", json={"room": ROOM, "session": s})).get_json()
    assert left["left"] is True and left["id"]
    twice = await (await client.post("/api/presence/leave", json={"room": ROOM, "session": s})).get_json()
    assert twice == {"left": False, "room": ROOM, "id": None}

    assert [brief(d) for d in logged(sync_client, key_prefix)] == [
        ("join", tab, "ana", "viewing", 1, None),
        ("update", tab, "ana", "editing:a-17", 1, None),
        ("leave", tab, "ana", "editing:a-17", 0, "left"),
    ]
    assert presence_keys(sync_client, key_prefix) == []


async def test_snapshot_groups_tabs_by_user(client: QuartClient) -> None:
    ana1, ana2, bob, anon = (new_session() for _ in range(4))
    for session, user, state in (
        (ana1, "ana", None),
        (ana2, "ana", "editing:a-1"),
        (bob, "bob", None),
        (anon, None, None),
    ):
        body = {"room": ROOM, "session": session, "user": user, "state": state}
        assert (await client.post("/api/presence", json={k: v for k, v in body.items() if v})).status_code == 200
    snap = await (await client.get("/api/presence", query_string={"room": ROOM})).get_json()
    assert snap["room"] == ROOM and snap["tabs"] == 4 and snap["cursor"]
    assert [(u["user"], u["tabs"], u["states"]) for u in snap["users"]] == [
        ("ana", 2, ["editing:a-1", "viewing"]),
        ("bob", 1, ["viewing"]),
        (None, 1, ["viewing"]),
    ]
    assert {t["tab"] for t in snap["users"][0]["sessions"]} == {tab_id(ana1), tab_id(ana2)}
    # Session ids are capabilities (they can end a tab's presence): never shown.
    assert ana1 not in str(snap)
    other = await (await client.get("/api/presence", query_string={"room": "dashboard"})).get_json()
    assert other["users"] == [] and other["tabs"] == 0


async def test_two_tabs_closing_one_keeps_the_user(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    tab_a, tab_b = new_session(), new_session()
    for s in (tab_a, tab_b):
        await client.post("/api/presence", json={"room": ROOM, "session": s, "user": "ana"})
    await client.post("/api/presence/leave", json={"room": ROOM, "session": tab_a})

    snap = await (await client.get("/api/presence", query_string={"room": ROOM})).get_json()
    assert [(u["user"], u["tabs"]) for u in snap["users"]] == [("ana", 1)]
    assert [t["tab"] for t in snap["users"][0]["sessions"]] == [tab_id(tab_b)]
    # The leave says the user still has a tab here, so no client drops "ana".
    assert [brief(d) for d in logged(sync_client, key_prefix)] == [
        ("join", tab_id(tab_a), "ana", "viewing", 1, None),
        ("join", tab_id(tab_b), "ana", "viewing", 2, None),
        ("leave", tab_id(tab_a), "ana", "viewing", 1, "left"),
    ]


async def test_beacon_and_form_bodies(client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str) -> None:
    s = new_session()
    form = await client.post("/api/presence", form={"room": ROOM, "session": s, "user": "", "state": ""})
    assert (await form.get_json())["action"] == "join"
    # navigator.sendBeacon(url, JSON.stringify(...)) sends text/plain.
    beacon = await client.post(
        "/api/presence/leave",
        data=orjson.dumps({"room": ROOM, "session": s}),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert (await beacon.get_json())["left"] is True
    assert [brief(d) for d in logged(sync_client, key_prefix)] == [
        ("join", tab_id(s), None, "viewing", 1, None),
        ("leave", tab_id(s), None, "viewing", 0, "left"),
    ]


# --- bad input: 4xx, nothing stored ---------------------------------------------

GOOD = {"room": ROOM, "session": "0123456789abcdef"}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"session": GOOD["session"]}, 422, "room"),
        ({"room": ROOM}, 422, "session"),
        ({**GOOD, "room": "Dashboard"}, 422, "room"),
        ({**GOOD, "room": "device:"}, 422, "room"),
        ({**GOOD, "room": "device/pump-1"}, 422, "room"),
        ({**GOOD, "room": "dev ice"}, 422, "room"),
        ({**GOOD, "room": "dashboard\n"}, 422, "room"),
        ({**GOOD, "session": GOOD["session"] + "\n"}, 422, "session"),
        ({**GOOD, "room": "device:" + "p" * 65}, 422, "room"),
        ({**GOOD, "room": 7}, 422, "room"),
        ({**GOOD, "session": "short"}, 422, "session"),
        ({**GOOD, "session": "s" * 65}, 422, "session"),
        ({**GOOD, "user": "u" * 65}, 422, "user"),
        ({**GOOD, "user": "ana\nbob"}, 422, "user"),
        ({**GOOD, "state": "editing:" + "x" * 65}, 422, "state"),
        ({**GOOD, "state": "Editing"}, 422, "state"),
        ({**GOOD, "colour": "red"}, 422, "colour"),
        ({**GOOD, "user": "u" * 3000}, 413, None),
        ([GOOD], 422, None),
    ],
)
async def test_bad_heartbeat_is_refused_and_stores_nothing(
    client: QuartClient,
    sync_client: sync_redis.Redis,
    key_prefix: str,
    body: Any,
    status: int,
    field: str | None,
) -> None:
    for path in ("/api/presence", "/api/presence/leave"):
        if path.endswith("leave") and field in ("user", "state"):
            continue  # leave takes only room and session
        response = await client.post(path, json=body)
        assert response.status_code == status, (path, await response.get_data())
        error = await response.get_json()
        assert set(error) == {"error", "detail"}
        if field is not None:
            assert [d["field"] for d in error["detail"]] == [field]
    assert presence_keys(sync_client, key_prefix) == []
    assert logged(sync_client, key_prefix) == []


async def test_malformed_bodies_and_queries(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    bad_json = await client.post("/api/presence", data=b"{", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    bad_beacon = await client.post("/api/presence/leave", data=b"nope", headers={"Content-Type": "text/plain"})
    assert bad_beacon.status_code == 400
    xml = await client.post("/api/presence", data=b"<a/>", headers={"Content-Type": "application/xml"})
    assert xml.status_code == 415
    for query in ({}, {"room": ""}, {"room": "BAD ROOM"}, {"room": "dashboard\n"}, {"room": "x" * 200}):
        response = await client.get("/api/presence", query_string=query)
        assert response.status_code == 400
        assert (await response.get_json())["error"] == "bad_query"
    assert presence_keys(sync_client, key_prefix) == []
    assert logged(sync_client, key_prefix) == []


# --- expiry: the sweeper, grace, and exactly-once ---------------------------------


async def test_late_heartbeats_within_grace_never_flap(
    fast_app: Quart, fast_client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    s = new_session()
    keys = Keys(key_prefix)
    hb_key = keys.presence_heartbeat(ROOM, s)
    beat = {"room": ROOM, "session": s, "user": "ana"}

    async def late() -> bool:
        # The 0.4 s TTL is over and 0.3-0.35 s of the 1 s grace is used up.
        return 0 <= int(sync_client.pttl(hb_key)) < 700

    async def expired() -> bool:
        return len(logged(sync_client, key_prefix)) >= 2

    assert (await (await fast_client.post("/api/presence", json=beat)).get_json())["action"] == "join"
    for _ in range(3):
        await async_wait_until(late, timeout=3, what="the heartbeat to be late")
        assert (await (await fast_client.post("/api/presence", json=beat)).get_json())["action"] == "refresh"
    # Silence past TTL + grace: the sweeper turns it into exactly one leave.
    await async_wait_until(expired, timeout=5, what="the expiry leave")
    assert [brief(d) for d in logged(sync_client, key_prefix)] == [
        ("join", tab_id(s), "ana", "viewing", 1, None),
        ("leave", tab_id(s), "ana", "viewing", 0, "expired"),
    ]
    assert presence_keys(sync_client, key_prefix) == []


async def test_many_sweepers_and_leaves_emit_each_leave_once(
    fast_app: Quart, redis_url: str, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    """Four stores on four connections (as four processes) race sweeps and explicit leaves."""
    eng = services_of(fast_app)
    clients = [Redis.from_url(redis_url) for _ in range(4)]
    try:
        stores = [PresenceStore(c, eng.keys, 500, 1000) for c in clients]
        sessions = [new_session() for _ in range(30)]
        for s in sessions:
            await stores[0].heartbeat(Heartbeat(room=ROOM, session=s, user="u"), Actor(name="u", self_declared=True))
        explicit = sessions[::3]

        async def sweep_until_empty(store: PresenceStore) -> None:
            async def swept() -> bool:
                # Each store sweeps on its own short tick (as the app's sweeper
                # loop does), racing the others, until nothing is left to expire.
                await store.sweep_once()
                return not sync_client.exists(eng.keys.presence_expiry(ROOM))

            await async_wait_until(swept, timeout=10, interval=0.01, what="nothing left to expire")

        leaves = [store.leave(ROOM, s) for s in explicit for store in stores]
        results = await asyncio.wait_for(asyncio.gather(*leaves, *(sweep_until_empty(st) for st in stores)), 10)
        # Each explicit leave was sent by all four; exactly one of them emitted.
        assert sum(1 for r in results[: len(leaves)] if r) == len(explicit)
    finally:
        for c in clients:
            await c.aclose()
    events = logged(sync_client, key_prefix)
    left = sorted(d["tab"] for d in events if d["action"] == "leave")
    assert left == sorted(tab_id(s) for s in sessions)
    by_reason = {d["tab"]: d["reason"] for d in events if d["action"] == "leave"}
    assert all(by_reason[tab_id(s)] == "left" for s in explicit)
    assert presence_keys(sync_client, key_prefix) == []


# --- end to end: two real processes on one Redis, read from the SSE stream -------

E2E_ENV = {
    "LIVEDASH_PRESENCE_HEARTBEAT_INTERVAL": "0.3",
    "LIVEDASH_PRESENCE_TTL": "1",
    "LIVEDASH_PRESENCE_GRACE": "0.5",
    "LIVEDASH_PRESENCE_SWEEP_INTERVAL": "0.2",
}


async def test_two_processes_join_refresh_leave_and_expiry_on_the_stream(
    start_server: Callable[..., AppServer],
) -> None:
    a, b = start_server(**E2E_ENV), start_server(**E2E_ENV)
    ana, bob = new_session(), new_session()
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=5) as to_a,
        httpx.AsyncClient(base_url=b.url, timeout=5) as to_b,
        open_stream(a.url, topics=f"room/{ROOM}") as stream,
    ):
        ready = await stream.next()
        assert ready.event == "ready"
        cursor = payload(ready)["cursor"]

        async def beat(via: httpx.AsyncClient, session: str, user: str, state: str = "viewing") -> str:
            response = await via.post(
                "/api/presence", json={"room": ROOM, "session": session, "user": user, "state": state}
            )
            assert response.status_code == 200, response.text
            return str(response.json()["action"])

        # Join on A; refresh on B (no event); a state change on B (one update).
        assert await beat(to_a, ana, "ana") == "join"
        assert await beat(to_b, ana, "ana") == "refresh"
        assert await beat(to_b, ana, "ana", "editing:a-1") == "update"
        # Explicit leave sent to both processes at once: one leave between them.
        answers = await asyncio.gather(
            *(c.post("/api/presence/leave", json={"room": ROOM, "session": ana}) for c in (to_a, to_b))
        )
        assert sorted(r.json()["left"] for r in answers) == [False, True]

        # Bob's tab heartbeats through both processes for longer than TTL +
        # grace (no leave), then is killed without a word (exactly one leave).
        sent = 0

        async def bob_tab() -> None:
            nonlocal sent
            while True:
                await beat((to_a, to_b)[sent % 2], bob, "bob")
                sent += 1
                # Paces the producer, waits on nothing: the page heartbeats on
                # this interval, and the test is that beats at that pace (to
                # either process) keep the tab alive past TTL + grace.
                await asyncio.sleep(0.3)  # the page's heartbeat interval (E2E_ENV)

        tab = asyncio.create_task(bob_tab())
        try:

            async def outlived() -> bool:
                return sent >= 8  # 2.4 s of heartbeats against a 1.5 s life

            await async_wait_until(outlived, timeout=10, what="bob's heartbeats")
        finally:
            tab.cancel()
            await asyncio.gather(tab, return_exceptions=True)

        events = [payload(e) for e in await stream.take(5, within=10)]
        assert [(e["type"], e["topic"], *brief(e["data"])) for e in events] == [
            ("presence", TOPIC, "join", tab_id(ana), "ana", "viewing", 1, None),
            ("presence", TOPIC, "update", tab_id(ana), "ana", "editing:a-1", 1, None),
            ("presence", TOPIC, "leave", tab_id(ana), "ana", "editing:a-1", 0, "left"),
            ("presence", TOPIC, "join", tab_id(bob), "bob", "viewing", 1, None),
            ("presence", TOPIC, "leave", tab_id(bob), "bob", "viewing", 0, "expired"),
        ]
        # No extras: both sweepers get several more rounds (a long poll that
        # must come back empty), and the log holds exactly what the stream showed.
        quiet = await to_b.get("/api/events", params={"since": events[-1]["id"], "topics": TOPIC, "wait": 1})
        assert quiet.json()["events"] == []
        log = await to_b.get("/api/events", params={"since": cursor, "topics": TOPIC})
        assert log.json()["events"] == events
        snap = await to_a.get("/api/presence", params={"room": ROOM})
        assert snap.json()["users"] == []

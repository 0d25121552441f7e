"""Annotations: version checks, last-write-wins, tombstones, revisions, events, htmx conflicts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import redis as sync_redis
from httpx_sse import aconnect_sse

from app.settings import Settings

from .servers import AppServer
from .types import QuartClient
from .waiting import async_wait_until

TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


async def create(client: QuartClient, **fields: Any) -> dict[str, Any]:
    body = {"device": "pump-1", "metric": "temp", "ts": TS, "text": "bearing replaced", "tags": ["maint"]}
    body.update(fields)
    response = await client.post("/api/annotations", json=body)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()  # type: ignore[no-any-return]


async def head(client: QuartClient) -> str:
    return (await (await client.get("/api/events")).get_json())["cursor"]  # type: ignore[no-any-return]


async def events_since(client: QuartClient, cursor: str, type_: str = "annotation") -> list[dict[str, Any]]:
    body = await (await client.get(f"/api/events?since={cursor}")).get_json()
    assert "reset" not in body, body
    return [e for e in body["events"] if e["type"] == type_]


def stored_keys(sync_client: sync_redis.Redis, key_prefix: str) -> list[bytes]:
    return list(sync_client.scan_iter(match=key_prefix + "annotation*"))


# --- create / fetch ---------------------------------------------------------------


async def test_create_answers_201_with_id_version_and_etag(client: QuartClient) -> None:
    response = await client.post(
        "/api/annotations", json={"device": "pump-1", "ts": "2026-01-01T00:00:00Z", "text": "hello", "tags": ["a"]}
    )
    assert response.status_code == 201
    doc = await response.get_json()
    assert doc["version"] == 1 and doc["id"] and doc["deleted"] is False
    assert doc["ts"] == TS and doc["metric"] is None and doc["created"] == doc["updated"]
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/api/annotations/{doc['id']}"
    fetched = await client.get(f"/api/annotations/{doc['id']}")
    assert fetched.status_code == 200 and await fetched.get_json() == doc
    assert fetched.headers["ETag"] == '"1"'


async def test_form_bodies_create_and_update(client: QuartClient) -> None:
    form = {"device": "pump-1", "ts": str(TS), "text": "from a form", "tags": "a, b", "metric": ""}
    response = await client.post("/api/annotations", form=form)
    assert response.status_code == 201
    doc = await response.get_json()
    assert doc["tags"] == ["a", "b"] and doc["metric"] is None
    response = await client.post(f"/api/annotations/{doc['id']}", form={"text": "edited", "version": "1"})
    assert response.status_code == 200
    assert (await response.get_json())["text"] == "edited"


# --- version checks -----------------------------------------------------------------


async def test_update_with_current_version_applies_and_bumps_by_one(client: QuartClient) -> None:
    doc = await create(client)
    response = await client.post(f"/api/annotations/{doc['id']}", json={"text": "new bearing", "version": 1})
    assert response.status_code == 200
    updated = await response.get_json()
    assert updated["version"] == 2 and updated["text"] == "new bearing"
    assert updated["tags"] == ["maint"] and updated["created"] == doc["created"]  # partial update keeps the rest
    assert response.headers["ETag"] == '"2"'


async def test_stale_version_gets_409_with_current_and_changes_nothing(client: QuartClient) -> None:
    doc = await create(client)
    await client.post(f"/api/annotations/{doc['id']}", json={"text": "theirs", "version": 1})
    cursor = await head(client)
    response = await client.post(f"/api/annotations/{doc['id']}", json={"text": "mine", "version": 1})
    assert response.status_code == 409
    body = await response.get_json()
    assert body["error"] == "conflict"
    assert body["current"]["text"] == "theirs" and body["current"]["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert (await (await client.get(f"/api/annotations/{doc['id']}")).get_json())["text"] == "theirs"
    assert await events_since(client, cursor) == []


async def test_if_match_header_forms(client: QuartClient) -> None:
    doc = await create(client)
    url = f"/api/annotations/{doc['id']}"
    assert (await client.post(url, json={"text": "x"}, headers={"If-Match": '"2"'})).status_code == 409
    assert (await client.post(url, json={"text": "a"}, headers={"If-Match": '"1"'})).status_code == 200
    assert (await client.post(url, json={"text": "b"}, headers={"If-Match": 'W/"2"'})).status_code == 200
    assert (await client.post(url, json={"text": "c"}, headers={"If-Match": "3"})).status_code == 200
    assert (await client.post(url, json={"text": "d"}, headers={"If-Match": "*"})).status_code == 200  # LWW
    bad = await client.post(url, json={"text": "e"}, headers={"If-Match": "banana"})
    assert bad.status_code == 400 and (await bad.get_json())["error"] == "bad_if_match"
    disagree = await client.post(url, json={"text": "e", "version": 5}, headers={"If-Match": '"4"'})
    assert disagree.status_code == 400
    assert (await (await client.get(url)).get_json())["version"] == 5


async def test_lww_without_version_later_write_stands_and_both_are_revisions(client: QuartClient) -> None:
    doc = await create(client, author="ann")
    url = f"/api/annotations/{doc['id']}"
    first = await client.post(url, json={"text": "alice's note", "author": "alice"})
    second = await client.post(url, json={"text": "bob's note", "author": "bob"})
    assert first.status_code == second.status_code == 200
    assert (await first.get_json())["version"] == 2 and (await second.get_json())["version"] == 3
    current = await (await client.get(url)).get_json()
    assert current["text"] == "bob's note" and current["version"] == 3

    revisions = (await (await client.get(url + "/revisions")).get_json())["revisions"]
    assert [(r["version"], r["action"], r["by"]) for r in revisions] == [
        (1, "created", "ann"),
        (2, "updated", "alice"),
        (3, "updated", "bob"),
    ]
    assert revisions[0]["before"] is None and revisions[0]["after"]["text"] == "bearing replaced"
    assert revisions[2]["before"]["text"] == "alice's note" and revisions[2]["after"]["text"] == "bob's note"
    assert all(isinstance(r["at"], int) for r in revisions)


async def test_device_cannot_change_and_optional_fields_clear(client: QuartClient) -> None:
    doc = await create(client, ts_end=TS + 60_000)
    url = f"/api/annotations/{doc['id']}"
    moved = await client.post(url, json={"device": "pump-2"})
    assert moved.status_code == 422 and (await moved.get_json())["detail"][0]["field"] == "device"
    same = await client.post(url, json={"device": "pump-1", "metric": None, "ts_end": None})
    assert same.status_code == 200
    assert (await same.get_json())["metric"] is None and (await same.get_json())["ts_end"] is None


# --- delete and tombstones ----------------------------------------------------------


async def test_delete_leaves_a_tombstone_and_stale_writes_get_410(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    doc = await create(client)
    url = f"/api/annotations/{doc['id']}"
    deleted = await client.post(url + "/delete", json={"version": 1})
    assert deleted.status_code == 200
    assert (await deleted.get_json())["deleted"] is True and (await deleted.get_json())["version"] == 2

    stale = await client.post(url, json={"text": "resurrect?", "version": 1})
    assert stale.status_code == 410 and (await stale.get_json())["current"]["deleted"] is True
    assert (await client.post(url, json={"text": "resurrect?"})).status_code == 410
    assert (await client.get(url)).status_code == 410
    assert (await client.delete(url)).status_code == 410
    listed = await (await client.get("/api/annotations")).get_json()
    assert listed["annotations"] == []

    ttl = sync_client.pttl(f"{key_prefix}annotation:{doc['id']}")
    assert 0 < ttl <= Settings.model_fields["tombstone_ttl"].default * 1000


async def test_delete_method_with_if_match_and_stale_delete(client: QuartClient) -> None:
    doc = await create(client)
    url = f"/api/annotations/{doc['id']}"
    assert (await client.delete(url, headers={"If-Match": '"7"'})).status_code == 409
    response = await client.delete(url, headers={"If-Match": '"1"'})
    assert response.status_code == 200 and response.headers["ETag"] == '"2"'


async def test_unknown_ids_are_404(client: QuartClient) -> None:
    assert (await client.post("/api/annotations/nope", json={"text": "x"})).status_code == 404
    assert (await client.get("/api/annotations/nope")).status_code == 404
    assert (await client.get("/api/annotations/nope/revisions")).status_code == 404
    assert (await client.post("/api/annotations/nope/delete")).status_code == 404
    assert (await client.get("/api/annotations/bad%20id!")).status_code == 404


# --- validation ---------------------------------------------------------------------


async def test_bad_bodies_name_the_field_and_store_nothing(
    client: QuartClient, sync_client: sync_redis.Redis, key_prefix: str
) -> None:
    cursor = await head(client)
    good = {"device": "pump-1", "ts": TS, "text": "ok"}
    cases = [
        ({k: v for k, v in good.items() if k != "text"}, "text"),
        ({**good, "text": ""}, "text"),
        ({**good, "text": "x" * 4001}, "text"),
        ({**good, "ts": "yesterday"}, "ts"),
        ({**good, "ts": 12}, "ts"),
        ({**good, "tags": "maint"}, "tags"),
        ({**good, "tags": ["t"] * 17}, "tags"),
        ({**good, "tags": ["x" * 65]}, "tags.0"),
        ({**good, "device": "pump 1"}, "device"),
        ({**good, "metric": "a/b"}, "metric"),
        ({**good, "ts_end": TS - 1}, "ts_end"),
        ({**good, "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = await client.post("/api/annotations", json=body)
        assert response.status_code == 422, (body, response.status_code)
        fields = [d["field"] for d in (await response.get_json())["detail"]]
        assert field in fields, (body, fields)
    assert (await client.post("/api/annotations", json=[good])).status_code == 422
    malformed = await client.post("/api/annotations", data="{", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert stored_keys(sync_client, key_prefix) == []
    assert await events_since(client, cursor) == []


async def test_bad_update_bodies_change_nothing(client: QuartClient) -> None:
    doc = await create(client)
    url = f"/api/annotations/{doc['id']}"
    for body, field in [({"text": None}, "text"), ({"text": "x" * 4001}, "text"), ({"version": 0}, "version")]:
        response = await client.post(url, json=body)
        assert response.status_code == 422
        assert (await response.get_json())["detail"][0]["field"] == field
    assert (await (await client.get(url)).get_json())["version"] == 1


# --- listing ------------------------------------------------------------------------


async def test_list_filters_by_device_metric_tag_and_time(client: QuartClient) -> None:
    a = await create(client, device="pump-1", metric="temp", ts=TS, tags=["maint"])
    b = await create(client, device="pump-1", metric="rpm", ts=TS + 10_000, ts_end=TS + 20_000, tags=["spike"])
    c = await create(client, device="pump-2", ts=TS + 30_000, tags=["maint"])

    async def ids(query: str) -> list[str]:
        response = await client.get("/api/annotations" + query)
        assert response.status_code == 200
        return [x["id"] for x in (await response.get_json())["annotations"]]

    assert await ids("") == [c["id"], b["id"], a["id"]]
    assert await ids("?device=pump-1") == [b["id"], a["id"]]
    assert await ids("?device=pump-1&metric=rpm") == [b["id"]]
    assert await ids("?tag=maint") == [c["id"], a["id"]]
    assert await ids(f"?from={TS + 15_000}") == [c["id"], b["id"]]  # b's range reaches in
    assert await ids(f"?to={TS + 5_000}") == [a["id"]]
    assert await ids("?from=2026-01-01T00:00:25Z&to=2026-01-01T00:00:35Z") == [c["id"]]
    assert await ids("?limit=1") == [c["id"]]
    assert (await client.get("/api/annotations?from=nope")).status_code == 400
    assert (await client.get("/api/annotations?device=a%20b")).status_code == 400


# --- events -------------------------------------------------------------------------


async def test_every_write_emits_one_annotation_event_with_its_version(client: QuartClient) -> None:
    cursor = await head(client)
    doc = await create(client, device="pump-7", author="ann")
    url = f"/api/annotations/{doc['id']}"
    await client.post(url, json={"text": "v2", "version": 1})
    await client.post(url, json={"text": "v3"})
    await client.post(url + "/delete", json={"author": "bob"})
    events = await events_since(client, cursor)
    assert [(e["data"]["action"], e["data"]["annotation"]["version"]) for e in events] == [
        ("created", 1),
        ("updated", 2),
        ("updated", 3),
        ("deleted", 4),
    ]
    assert {e["topic"] for e in events} == {"device/pump-7"}
    assert events[0]["data"]["by"] == "ann" and events[3]["data"]["by"] == "bob"
    assert events[2]["data"]["annotation"]["text"] == "v3" and events[3]["data"]["annotation"]["deleted"] is True


# --- htmx ---------------------------------------------------------------------------


async def test_htmx_conflict_fragment_shows_both_versions_escaped(client: QuartClient) -> None:
    doc = await create(client)
    url = f"/api/annotations/{doc['id']}"
    await client.post(url, json={"text": "<b>theirs</b>", "version": 1})
    response = await client.post(
        url, form={"text": "<script>mine</script>", "tags": "x, y", "version": "1"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 409
    assert response.content_type.startswith("text/html")
    html = await response.get_data(as_text=True)
    assert "&lt;script&gt;mine&lt;/script&gt;" in html and "<script>mine" not in html
    assert "&lt;b&gt;theirs&lt;/b&gt;" in html
    assert 'name="version" value="2"' in html  # keep mine: re-post on top of theirs
    assert "Keep mine" in html and "Take theirs" in html and f'hx-get="/api/annotations/{doc["id"]}"' in html

    # "Keep mine" posts exactly the hidden fields of that form.
    keep = await client.post(
        url, form={"text": "<script>mine</script>", "tags": "x, y", "version": "2"}, headers={"HX-Request": "true"}
    )
    assert keep.status_code == 200 and "version 3" in await keep.get_data(as_text=True)
    taken = await client.get(url, headers={"HX-Request": "true"})
    assert taken.status_code == 200 and 'name="version" value="3"' in await taken.get_data(as_text=True)


# --- real servers -------------------------------------------------------------------


async def test_race_across_two_processes_exactly_one_wins(start_server: Callable[..., AppServer]) -> None:
    servers = [start_server(), start_server()]
    async with httpx.AsyncClient(timeout=10) as http:
        created = await http.post(
            servers[0].url + "/api/annotations", json={"device": "pump-1", "ts": TS, "text": "base"}
        )
        doc_id = created.json()["id"]
        n = 8
        responses = await asyncio.gather(
            *(
                http.post(f"{servers[i % 2].url}/api/annotations/{doc_id}", json={"text": f"writer {i}", "version": 1})
                for i in range(n)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [409] * (n - 1)
        winner = next(r.json() for r in responses if r.status_code == 200)
        for r in responses:
            if r.status_code == 409:
                assert r.json()["current"] == winner
        final = (await http.get(f"{servers[1].url}/api/annotations/{doc_id}")).json()
        assert final["version"] == 2 and final["text"] == winner["text"]


async def test_writes_appear_on_the_sse_stream_in_order(server: AppServer) -> None:
    expected = [("created", 1), ("updated", 2), ("updated", 3), ("deleted", 4)]
    seen: list[tuple[str, int]] = []
    async with (
        httpx.AsyncClient(timeout=10) as http,
        aconnect_sse(http, "GET", server.url + "/api/stream?topics=device/pump-9") as source,
    ):
        events = source.aiter_sse()
        first = await anext(events)
        assert first.event == "ready"

        async def write() -> None:
            doc = (
                await http.post(server.url + "/api/annotations", json={"device": "pump-9", "ts": TS, "text": "a"})
            ).json()
            url = f"{server.url}/api/annotations/{doc['id']}"
            assert (await http.post(url, json={"text": "b", "version": 1})).status_code == 200
            assert (await http.post(url, json={"text": "c"})).status_code == 200
            assert (await http.post(url + "/delete")).status_code == 200

        writer = asyncio.create_task(write())

        async def collect() -> None:
            async for sse in events:
                if sse.event == "annotation":
                    data = json.loads(sse.data)["data"]
                    seen.append((data["action"], data["annotation"]["version"]))
                elif sse.event not in ("ping",):
                    raise AssertionError(f"unexpected event {sse.event}: {sse.data}")
                if len(seen) == len(expected):
                    return

        await asyncio.wait_for(collect(), 10)
        await writer
    assert seen == expected


async def test_polling_view_shows_the_same_writes(server: AppServer) -> None:
    async with httpx.AsyncClient(timeout=10, base_url=server.url) as http:
        cursor = (await http.get("/api/events")).json()["cursor"]
        doc = (await http.post("/api/annotations", json={"device": "pump-3", "ts": TS, "text": "a"})).json()
        await http.post(f"/api/annotations/{doc['id']}", json={"text": "b"}, headers={"If-Match": '"1"'})

        async def two() -> list[dict[str, Any]] | None:
            body = (await http.get(f"/api/events?since={cursor}&topics=device/pump-3")).json()
            assert "reset" not in body, body
            found = [e for e in body["events"] if e["type"] == "annotation"]
            return found if len(found) == 2 else None

        found = await async_wait_until(two, timeout=5, what="two annotation events")
        assert found is not None
        assert [e["data"]["annotation"]["version"] for e in found] == [1, 2]

"""Who did what comes from the caller's identity, never from a request body (issue 18, item 1).

Notes, their revisions and events, rule revisions and presence name the
token's display name and its stable subject (the token id); a body's
``author`` or ``user`` is ignored while authentication is on. With it off,
the typed name is kept and marked ``self_declared``.
"""

from __future__ import annotations

import uuid
from typing import Any

from .test_security import ADMIN, bearer, sclient, secure_app  # noqa: F401 (fixtures)
from .types import QuartClient


async def token(client: QuartClient, role: str, name: str | None = None) -> tuple[str, str]:
    """(plaintext, id) of a new token."""
    spec: dict[str, Any] = {"role": role}
    if name is not None:
        spec["name"] = name
    response = await client.post("/api/tokens", json=spec, headers=ADMIN)
    assert response.status_code == 201, await response.get_data(as_text=True)
    body = await response.get_json()
    return str(body["token"]), str(body["id"])


async def test_bobs_edit_of_anas_note_says_bob(sclient: QuartClient) -> None:  # noqa: F811
    ana, ana_id = await token(sclient, "editor", "Ana Lima")
    bob, bob_id = await token(sclient, "editor", "Bob")
    created = await sclient.post(
        "/api/annotations", json={"device": "pump-1", "text": "bearing", "author": "Mallory"}, headers=bearer(ana)
    )
    assert created.status_code == 201
    note = await created.get_json()
    assert (note["author"], note["author_id"], note["self_declared"]) == ("Ana Lima", ana_id, False)
    # Bob's editor is prefilled with Ana's name: the body's author changes nothing.
    updated = await sclient.post(
        f"/api/annotations/{note['id']}",
        json={"text": "bearing replaced", "author": "Ana Lima", "version": 1},
        headers=bearer(bob),
    )
    assert updated.status_code == 200, await updated.get_data(as_text=True)
    doc = await updated.get_json()
    assert (doc["author"], doc["author_id"], doc["self_declared"]) == ("Bob", bob_id, False)
    revisions = (await (await sclient.get(f"/api/annotations/{note['id']}/revisions", headers=ADMIN)).get_json())[
        "revisions"
    ]
    assert [(r["by"], r["by_id"]) for r in revisions] == [("Ana Lima", ana_id), ("Bob", bob_id)]
    assert all(r["self_declared"] is False for r in revisions)
    deleted = await sclient.post(f"/api/annotations/{note['id']}/delete", json={"author": "Ana"}, headers=bearer(bob))
    assert deleted.status_code == 200
    revisions = (await (await sclient.get(f"/api/annotations/{note['id']}/revisions", headers=ADMIN)).get_json())[
        "revisions"
    ]
    assert (revisions[-1]["action"], revisions[-1]["by"], revisions[-1]["by_id"]) == ("deleted", "Bob", bob_id)
    # The events say so too.
    events = (await (await sclient.get("/api/events?since=0-0", headers=ADMIN)).get_json())["events"]
    by = [(e["data"]["action"], e["data"]["by"], e["data"]["by_id"]) for e in events if e["type"] == "annotation"]
    assert by == [("created", "Ana Lima", ana_id), ("updated", "Bob", bob_id), ("deleted", "Bob", bob_id)]


async def test_rule_revisions_name_the_caller(sclient: QuartClient) -> None:  # noqa: F811
    root, root_id = await token(sclient, "admin", "Root")
    rule = {"device": "pump-1", "metric": "t", "op": "above", "threshold": 80}
    created = await sclient.post("/api/alerts/rules", json=rule, headers=bearer(root))
    assert created.status_code == 201
    rule_id = (await created.get_json())["id"]
    updated = await sclient.post(f"/api/alerts/rules/{rule_id}", json={"threshold": 90}, headers=ADMIN)
    assert updated.status_code == 200
    revisions = (await (await sclient.get(f"/api/alerts/rules/{rule_id}/revisions", headers=ADMIN)).get_json())[
        "revisions"
    ]
    assert [(r["by"], r["by_id"]) for r in revisions] == [("Root", root_id), ("LIVEDASH_ADMIN_TOKEN", "bootstrap")]


async def heartbeat(client: QuartClient, headers: dict[str, str], **extra: Any) -> None:
    body = {"room": "dashboard", "session": uuid.uuid4().hex, **extra}
    response = await client.post("/api/presence", json=body, headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)


async def test_two_unnamed_tokens_are_two_people_and_nobody_is_someone_else(sclient: QuartClient) -> None:  # noqa: F811
    ana, ana_id = await token(sclient, "viewer", "Ana Lima")
    one, one_id = await token(sclient, "viewer")
    two, two_id = await token(sclient, "viewer")
    await heartbeat(sclient, bearer(ana))
    await heartbeat(sclient, bearer(one))
    # A viewer that calls itself Ana does not join Ana's chip.
    await heartbeat(sclient, bearer(two), user="Ana Lima")
    snap = await (await sclient.get("/api/presence?room=dashboard", headers=ADMIN)).get_json()
    people = {u["subject"]: (u["user"], u["tabs"], u["self_declared"]) for u in snap["users"]}
    assert people == {
        ana_id: ("Ana Lima", 1, False),
        one_id: (f"token {one_id}", 1, False),
        two_id: (f"token {two_id}", 1, False),
    }
    # A second tab of the same token is the same person, x2.
    await heartbeat(sclient, bearer(one))
    snap = await (await sclient.get("/api/presence?room=dashboard", headers=ADMIN)).get_json()
    assert {u["subject"]: u["tabs"] for u in snap["users"]} == {ana_id: 1, one_id: 2, two_id: 1}


async def test_an_admin_renames_a_token_and_its_writes_follow(sclient: QuartClient) -> None:  # noqa: F811
    plain, token_id = await token(sclient, "editor")
    viewer, _ = await token(sclient, "viewer")
    refused = await sclient.post(f"/api/tokens/{token_id}", json={"name": "Eve"}, headers=bearer(viewer))
    assert refused.status_code == 403
    renamed = await sclient.post(f"/api/tokens/{token_id}", json={"name": "Carla Diaz"}, headers=ADMIN)
    assert renamed.status_code == 200
    assert (await renamed.get_json())["name"] == "Carla Diaz"
    assert (await sclient.post("/api/tokens/000000000000", json={"name": "x"}, headers=ADMIN)).status_code == 404
    bad = await sclient.post(f"/api/tokens/{token_id}", json={"name": ""}, headers=ADMIN)
    assert bad.status_code == 422
    note = await sclient.post("/api/annotations", json={"device": "pump-1", "text": "x"}, headers=bearer(plain))
    assert ((await note.get_json())["author"], (await note.get_json())["author_id"]) == ("Carla Diaz", token_id)
    who = await (await sclient.get("/api/session", headers=bearer(plain))).get_json()
    assert (who["name"], who["subject"]) == ("Carla Diaz", token_id)


async def test_with_auth_off_names_are_self_declared(client: QuartClient) -> None:
    created = await client.post("/api/annotations", json={"device": "pump-1", "text": "x", "author": "Ana"})
    doc = await created.get_json()
    assert (doc["author"], doc["author_id"], doc["self_declared"]) == ("Ana", None, True)
    revisions = (await (await client.get(f"/api/annotations/{doc['id']}/revisions")).get_json())["revisions"]
    assert (revisions[0]["by"], revisions[0]["self_declared"]) == ("Ana", True)
    await heartbeat(client, {}, user="Ana")
    await heartbeat(client, {})
    await heartbeat(client, {})
    # Nor may anyone rename a token meanwhile: the name would outlive the switch.
    renamed = await client.post("/api/tokens/0123456789ab", json={"name": "Ana"})
    assert renamed.status_code == 403 and (await renamed.get_json())["error"] == "auth_off"
    snap = await (await client.get("/api/presence?room=dashboard")).get_json()
    # Two unnamed tabs are two people (nobody to tell them apart but the tab), all self-declared.
    assert sorted((u["user"] or "", u["tabs"], u["self_declared"]) for u in snap["users"]) == [
        ("", 1, True),
        ("", 1, True),
        ("Ana", 1, True),
    ]

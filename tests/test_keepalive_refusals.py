"""A keep-alive client is never cut off after a refused write.

A POST refused before its body is read (401, 403, 413, 415, ...) leaves the
body unread on the connection. The server must either read it or say
``Connection: close``; otherwise the client reuses the connection for its
next request and gets "Server disconnected without sending a response".
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx

from .servers import AppServer
from .test_security_e2e import ADMIN, SECURE_ENV, bearer, make_token

ROUNDS = 50


def test_refused_posts_never_cut_a_keep_alive_client(start_server: Callable[..., AppServer]) -> None:
    server = start_server(**SECURE_ENV)
    viewer = bearer(make_token(server.url, "viewer"))
    # Bodies of a few kB (the refusal comes before the body has arrived in full).
    reading = {"device": "pump-1", "metric": "t", "value": 1, "tags": {"pad": "x" * 2000}}
    small = {"device": "pump-1", "metric": "t", "value": 1}
    annotation = {"device": "pump-1", "text": "y" * 4000}
    statuses: list[int] = []
    # One client: one keep-alive connection reused for as long as the server allows.
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(ROUNDS):
            statuses.append(client.post("/api/metrics", json=reading).status_code)  # no credential
            statuses.append(client.post("/api/metrics", json=reading, headers=viewer).status_code)
            statuses.append(client.post("/api/annotations", json=annotation, headers=viewer).status_code)
            statuses.append(client.get("/api/metrics/latest", headers=viewer).status_code)
            statuses.append(client.post("/api/metrics", json=small, headers=ADMIN).status_code)
    assert statuses == [401, 403, 403, 200, 202] * ROUNDS


def test_a_large_unread_body_is_answered_with_connection_close(start_server: Callable[..., AppServer]) -> None:
    """Past what is worth reading, the refusal says the connection ends, and the client opens a new one."""
    server = start_server(**SECURE_ENV)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(
            b"POST /api/annotations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\n\r\n{"
        )
        head = conn.recv(65536).split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 401")
    assert b"\r\nconnection: close" in head

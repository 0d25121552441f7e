"""Connections that misbehave are bounded by server settings, not by luck.

Half-open (connects, sends nothing), slowloris (dribbles a request's headers)
and oversized headers, against a real hypercorn process started with the same
flags as the Procfile except a short keep-alive, so the test is quick.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx

from .servers import AppServer

KEEP_ALIVE = 2


def closed_within(sock: socket.socket, seconds: float, dribble: bytes = b"") -> float:
    """Seconds until the server closes ``sock`` (sending ``dribble`` a byte at a time meanwhile)."""
    started = time.monotonic()
    sock.settimeout(0.2)
    sent = 0
    while time.monotonic() - started < seconds:
        if sent < len(dribble):
            try:
                sock.sendall(dribble[sent : sent + 1])
            except OSError:
                return time.monotonic() - started
            sent += 1
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    raise AssertionError(f"connection still open after {seconds}s")


def test_half_open_and_slowloris_connections_are_closed(start_server: Callable[..., AppServer]) -> None:
    server = start_server(extra_args=("--keep-alive", str(KEEP_ALIVE)))
    with socket.create_connection(("127.0.0.1", server.port)) as silent:
        assert closed_within(silent, KEEP_ALIVE + 5) < KEEP_ALIVE + 3
    headers = b"GET /api/metrics/latest HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    with socket.create_connection(("127.0.0.1", server.port)) as slow:
        assert closed_within(slow, KEEP_ALIVE + 5, dribble=headers) < KEEP_ALIVE + 3
    # The server is unharmed.
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_oversized_headers_get_a_4xx(start_server: Callable[..., AppServer]) -> None:
    server = start_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n")
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 4"), answer[:80]
    assert httpx.get(server.url + "/healthz").status_code == 200

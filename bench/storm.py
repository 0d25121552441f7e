"""Reconnect storms: many streams opening at once, on a fresh server and after a deploy.

Two scenarios, each on a freshly started server process (so nothing an earlier
scenario left in its heap hides what the streams cost):

* ``open``: N streams connect at the same moment (no client-side pacing, as
  after a network blip). Measured: the time until every one has its ``200``,
  opens per second, refused or failed attempts, and the p99 of a ``GET
  /healthz`` and of a one-reading POST sent every 20 ms during the storm on
  connections of their own (what a load balancer's check and a sensor see).
* ``restart``: N streams open and settled; then SIGTERM to the server's whole
  process group (a platform's deploy), and a new server on the same port as
  soon as the old one has exited. Each client behaves as ``EventSource``:
  after its stream ends it waits the last ``retry:`` hint it was given (the
  ``bye`` carries a short jittered one), and while the port refuses it tries
  again every 250 ms. Measured: the time from the signal until every client
  streams again, the error count, and the same probes.

Every client is a bare ``asyncio.Protocol`` (as in ``loadgen``); the only
parsing is a search for ``retry:`` in what arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from .loadgen import HttpConnection
from .peers import Peer, reading_body
from .procstat import tree_usage

HOST = "127.0.0.1"
RETRY_RE = re.compile(rb"retry: ?(\d+)")
# A first connect that is refused is retried after this (jittered); later ones after the client's retry hint.
REFUSED_RETRY = 0.25
# /healthz 50 times a second; a reading once a second (each one is delivered to every open stream,
# so a faster POST probe would turn the storm into a fan-out benchmark).
HEALTH_EVERY = 0.02
POST_EVERY = 1.0
# EventSource's own delay when a server never sent a retry: hint (Chromium: 3 s).
DEFAULT_RETRY = 3.0


@dataclass(eq=False)
class Storm:
    """Shared state of all clients: how many stream now, and what went wrong."""

    request: bytes
    streaming: int = 0
    errors: int = 0
    opened_at: list[float] = field(default_factory=list)
    all_open: asyncio.Event = field(default_factory=asyncio.Event)
    target: int = 0
    stopping: bool = False
    live: set[StormClient] = field(default_factory=set)
    # What went wrong, by kind: "refused" (connect failed) or the status line of a non-200 answer.
    error_kinds: Counter[str] = field(default_factory=Counter)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] += 1


class StormClient(asyncio.Protocol):
    def __init__(self, storm: Storm) -> None:
        self.storm = storm
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.retry = DEFAULT_RETRY
        self.first = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.storm.live.add(self)
        self.transport.write(self.storm.request)

    def data_received(self, data: bytes) -> None:
        storm = self.storm
        if self.first:
            self.first = False
            if not data.startswith(b"HTTP/1.1 200"):
                storm.error(data.split(b"\r\n", 1)[0].decode(errors="replace"))
                assert self.transport is not None
                self.transport.close()
                return
            self.open = True
            storm.streaming += 1
            storm.opened_at.append(time.perf_counter())
            if storm.streaming >= storm.target:
                storm.all_open.set()
        if b"retry:" in data and (found := RETRY_RE.search(data)):
            self.retry = int(found.group(1)) / 1000

    def connection_lost(self, exc: Exception | None) -> None:
        self.storm.live.discard(self)
        if self.open:
            self.storm.streaming -= 1
        if not self.storm.stopping:
            asyncio.get_running_loop().create_task(connect(self.storm, delay=self.retry, retry=self.retry))


async def connect(storm: Storm, delay: float = 0.0, retry: float | None = None) -> None:
    """Open one stream (after ``delay``), retrying while the port refuses, as EventSource does:
    after its reconnection time (the server's last ``retry:`` hint)."""
    loop = asyncio.get_running_loop()
    if delay:
        await asyncio.sleep(delay)
    while not storm.stopping:
        client = StormClient(storm)
        try:
            await loop.create_connection(lambda c=client: c, HOST, _port(storm))  # type: ignore[misc]
            return
        except OSError:
            storm.error("refused")
            await asyncio.sleep(retry if retry is not None else REFUSED_RETRY * (0.5 + random.random()))


def _port(storm: Storm) -> int:
    return int(storm.request.split(b"Host: 127.0.0.1:", 1)[1].split(b"\r\n", 1)[0])


class Probes:
    """A GET of the health path every HEALTH_EVERY s and a one-reading POST every POST_EVERY s.

    Each on a keep-alive connection opened before the storm (as a sensor's and a load balancer's are):
    what they time is the server's answer, not the kernel's accept queue.
    """

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.health: list[float] = []
        self.post: list[float] = []
        self.failed = 0
        self._health = HttpConnection(HOST, peer.port, peer.read_headers)
        self._post = HttpConnection(HOST, peer.port, peer.write_headers)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self._health.get(self.peer.health_path)
        await self._post.post(self.peer.publish_path, reading_body([10_000_000]))
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._loop(self._health, None, self.health, HEALTH_EVERY)),
            loop.create_task(self._loop(self._post, self.peer.publish_path, self.post, POST_EVERY)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._health.close()
        self._post.close()

    async def _loop(self, conn: HttpConnection, post_path: str | None, out: list[float], every: float) -> None:
        seq = 10_000_001
        while True:
            start = time.perf_counter()
            try:
                if post_path is None:
                    status = await conn.get(self.peer.health_path)
                else:
                    status = await conn.post(post_path, reading_body([seq]))
                if status >= 300:
                    self.failed += 1
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                self.failed += 1
                conn.close()
                conn.writer = None
            out.append(time.perf_counter() - start)
            seq += 1
            await asyncio.sleep(every)


def _request(peer: Peer) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s:%d\r\n%sAccept: text/event-stream\r\n\r\n" % (
        peer.stream_path.encode(),
        HOST.encode(),
        peer.port,
        peer.read_headers,
    )


def _p99_ms(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)


async def _close(storm: Storm) -> None:
    storm.stopping = True
    for client in list(storm.live):
        if client.transport is not None:
            client.transport.close()
    await asyncio.sleep(0.5)


async def open_storm(peer: Peer, streams: int, within: float) -> dict[str, Any]:
    storm = Storm(_request(peer), target=streams)
    before = tree_usage(peer.pid)
    probes = Probes(peer)
    await probes.start()
    took: float | None = None
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(connect(storm) for _ in range(streams)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await storm.all_open.wait()
            took = time.perf_counter() - t0
        opened = tree_usage(peer.pid)
        streaming = storm.streaming
    finally:
        await probes.stop()
        await _close(storm)
    return {
        "open_s": round(took, 2) if took else None,
        "opens_per_s": round(streams / took) if took else None,
        "streaming": streaming,
        "errors": storm.errors,
        "error_kinds": dict(storm.error_kinds),
        "server_cpu_s": round(opened.cpu_seconds - before.cpu_seconds, 2),
        "healthz_p99_ms": _p99_ms(probes.health),
        "post_p99_ms": _p99_ms(probes.post),
        "probe_failed": probes.failed,
    }


async def restart_storm(peer: Peer, streams: int, within: float) -> dict[str, Any]:
    storm = Storm(_request(peer), target=streams)
    probes = Probes(peer)
    loop = asyncio.get_running_loop()
    took: float | None = None
    try:
        await asyncio.gather(*(connect(storm) for _ in range(streams)))
        async with asyncio.timeout(within):
            await storm.all_open.wait()
        await asyncio.sleep(1.0)
        storm.all_open.clear()
        storm.errors = 0
        storm.error_kinds.clear()
        await probes.start()
        t0 = time.perf_counter()
        peer.terminate_group()
        await loop.run_in_executor(None, peer.wait_exit)
        exited = time.perf_counter() - t0
        peer.respawn(wait=False)  # the clients find it when it listens (a readiness probe would compete)
        listening = await loop.run_in_executor(None, peer.wait_listening_socket) - t0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await storm.all_open.wait()
            took = time.perf_counter() - t0
        streaming = storm.streaming
    finally:
        await probes.stop()
        await _close(storm)
    return {
        "old_exited_s": round(exited, 2),
        "new_listening_s": round(listening, 2),
        "all_back_s": round(took, 2) if took else None,
        "streaming": streaming,
        "errors": storm.errors,
        "error_kinds": dict(storm.error_kinds),
        "healthz_p99_ms": _p99_ms(probes.health),
        "post_p99_ms": _p99_ms(probes.post),
        "probe_failed": probes.failed,
    }

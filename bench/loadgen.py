"""The load generator: many cheap SSE readers and a paced publisher.

Readers are bare ``asyncio.Protocol`` objects (no HTTP library, no SSE
parser): each one counts the marker ``"seq"`` (the tag every reading the
publisher sends carries, whatever JSON spacing a server uses) in the bytes it
receives. A sample of the readers also pulls out the sequence number and
compares the arrival time with the time the publisher wrote that POST,
giving POST->subscriber latency. Both clocks are this process's
``perf_counter``. Readers skip SSE parsing on purpose: the point is that the
generator is never the bottleneck (its own CPU is reported next to the
servers').
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

MARK = b'"#'  # each reading's unit is "#<seq>" (bench/peers.py)
SEQ_RE = re.compile(rb'"#(\d+)"')
SKIPPED_RE = re.compile(rb'"skipped":(\d+)')
EVENT_END = b"\n\n"
PING = b"event: ping"
OPEN_ATTEMPTS = 5


@dataclass
class Sent:
    """What the publisher sent: seq -> send time, and POST round trips."""

    at: dict[int, float] = field(default_factory=dict)
    post_latency: list[float] = field(default_factory=list)
    ok: int = 0
    failed: int = 0
    readings: int = 0


class SSEReader(asyncio.Protocol):
    def __init__(self, request: bytes, sent: Sent, sample: bool) -> None:
        self.request = request
        self.sent = sent
        self.sample = sample
        self.events = 0
        self.skipped = 0
        self.latencies: list[float] = []
        self.seqs: list[int] = []  # the seq of each latency (sampled readers): a per-event timeline
        self.pings: list[float] = []  # arrival times of keep-alive pings (sampled readers)
        self.opened: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self._tail = b""
        self.first = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            self.first = data
            self.opened.set_result(data.startswith(b"HTTP/1.1 200"))
        if self.sample:
            # Keep a partial event for the next read, so no seq is split in two.
            buf = self._tail + data
            cut = buf.rfind(EVENT_END) + len(EVENT_END)
            complete, self._tail = buf[:cut], buf[cut:]
            if not complete:
                return
            now = time.perf_counter()
            if PING in complete:
                self.pings.append(now)
            at = self.sent.at
            for match in SEQ_RE.finditer(complete):
                seq = int(match.group(1))
                sent_at = at.get(seq)
                if sent_at is not None:
                    self.latencies.append(now - sent_at)
                    self.seqs.append(seq)
                self.events += 1
        else:
            # A marker may straddle two reads: carry its length minus one byte.
            buf = self._tail + data
            self.events += buf.count(MARK)
            self._tail = buf[-(len(MARK) - 1) :]
            complete = data
        if b'"skipped":' in complete:
            self.skipped += sum(int(m.group(1)) for m in SKIPPED_RE.finditer(complete))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_result(False)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_readers(
    host: str,
    port: int,
    path: str,
    count: int,
    sent: Sent,
    sample: int,
    concurrency: int = 200,
    within: float = 60,
    headers: bytes = b"",
) -> list[SSEReader]:
    """Open ``count`` streams (``sample`` of them measuring latency); raises if one fails."""
    loop = asyncio.get_running_loop()
    request = b"GET %s HTTP/1.1\r\nHost: %s:%d\r\n%sAccept: text/event-stream\r\n\r\n" % (
        path.encode(),
        host.encode(),
        port,
        headers,
    )
    gate = asyncio.Semaphore(concurrency)
    readers: list[SSEReader] = []

    async def one(i: int) -> None:
        async with gate:
            # A browser's EventSource retries a refused stream; so do we, a few times.
            for attempt in range(OPEN_ATTEMPTS):
                reader = SSEReader(request, sent, sample=i < sample)
                await loop.create_connection(lambda r=reader: r, host, port)  # type: ignore[misc]
                if await reader.opened:
                    readers.append(reader)
                    return
                reader.close()
                await asyncio.sleep(0.2 * (attempt + 1))
            raise RuntimeError(f"stream {i} did not open with 200: {reader.first[-120:]!r}")

    try:
        async with asyncio.timeout(within):
            await asyncio.gather(*(one(i) for i in range(count)))
    except BaseException:
        # The scenario fails, but the streams that did open must not linger
        # in the server (they would tax every scenario after this one).
        for reader in readers:
            reader.close()
        raise
    return readers


class HttpConnection:
    """A keep-alive HTTP/1.1 client connection that POSTs (or GETs) and reads the status."""

    def __init__(self, host: str, port: int, headers: bytes = b"") -> None:
        self.host, self.port = host, port
        self.headers = headers  # extra header lines, each ending in CRLF (e.g. Authorization)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        return await self._request(
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (path.encode(), self.host.encode(), self.port, self.headers, len(body))
            + body
        )

    async def get(self, path: str) -> int:
        return await self._request(
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n" % (path.encode(), self.host.encode(), self.port, self.headers)
        )

    async def _request(self, request: bytes) -> int:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        status = int((await self.reader.readline()).split()[1])
        length, chunked = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await self.reader.readline()).strip() or b"0", 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


BodyFactory = Callable[[list[int]], bytes]


async def publish_paced(
    host: str,
    port: int,
    path: str,
    body_for: BodyFactory,
    rate: float,
    duration: float,
    sent: Sent,
    connections: int,
    headers: bytes = b"",
) -> None:
    """Send one single-reading POST every 1/rate seconds for ``duration``, on a small pool."""
    pool: asyncio.Queue[HttpConnection] = asyncio.Queue()
    conns = [HttpConnection(host, port, headers) for _ in range(connections)]
    for conn in conns:
        pool.put_nowait(conn)
    tasks: set[asyncio.Task[None]] = set()

    async def post(conn: HttpConnection, seq: int) -> None:
        body = body_for([seq])
        start = time.perf_counter()
        sent.at[seq] = start
        try:
            status = await conn.post(path, body)
            if 200 <= status < 300:
                sent.ok += 1
                sent.readings += 1
            else:
                sent.failed += 1
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            sent.failed += 1
            conn.close()
            conn.writer = None
        finally:
            sent.post_latency.append(time.perf_counter() - start)
            pool.put_nowait(conn)

    loop = asyncio.get_running_loop()
    start = loop.time()
    total = int(rate * duration)
    try:
        for i in range(total):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            conn = await pool.get()
            task = asyncio.create_task(post(conn, i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=10)
    finally:
        for task in tasks:
            task.cancel()
        for conn in conns:
            conn.close()


async def publish_closed_loop(
    host: str,
    port: int,
    path: str,
    body_for: BodyFactory,
    batch: int,
    duration: float,
    sent: Sent,
    connections: int,
    headers: bytes = b"",
) -> None:
    """As fast as the server answers: ``connections`` clients, each POSTing ``batch`` readings back to back."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    counter = iter(range(10**12))

    async def client() -> None:
        conn = HttpConnection(host, port, headers)
        try:
            while loop.time() < deadline:
                seqs = [next(counter) for _ in range(batch)]
                body = body_for(seqs)
                start = time.perf_counter()
                try:
                    status = await conn.post(path, body)
                except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                    sent.failed += 1
                    conn.close()
                    conn.writer = None
                    continue
                sent.post_latency.append(time.perf_counter() - start)
                if 200 <= status < 300:
                    sent.ok += 1
                    sent.readings += batch
                else:
                    sent.failed += 1
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(connections)))

"""A loopback HTTP proxy that, while ``buffering`` is on, holds back every
``/api/stream`` response until the server ends it (as a proxy that buffers
whole responses does); everything else passes straight through.

One request per connection (it asks the server for ``Connection: close``),
so it needs no HTTP parsing beyond the request head. It runs an asyncio
loop in a thread of its own; ``stop()`` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class BufferingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.buffering = True
        self.port = 0
        self.held_back = 0  # stream responses held back so far
        # /api/stream exchanges open now: (client, server) writers.
        self._streams: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BufferingProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    def drop_streams(self) -> None:
        """Cut every stream open through the proxy now (as a proxy restart would)."""

        async def cut() -> None:
            for pair in list(self._streams):
                for writer in pair:
                    writer.close()

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()
            # Transports close on the loop's next turns: let them before it stops.
            for _ in range(3):
                await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream_w: asyncio.StreamWriter | None = None
        try:
            head = await client_r.readuntil(b"\r\n\r\n")
            request_line, *headers = head[:-4].split(b"\r\n")
            kept = [h for h in headers if not h.lower().startswith(b"connection:")]
            path = request_line.split(b" ")[1] if b" " in request_line else b""
            hold = self.buffering and path.startswith(b"/api/stream")
            if hold:
                self.held_back += 1
            upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            if path.startswith(b"/api/stream"):
                self._streams.add((client_w, upstream_w))
            upstream_w.write(b"\r\n".join([request_line, *kept, b"Connection: close", b"", b""]))
            to_upstream = asyncio.ensure_future(self._pipe(client_r, upstream_w))
            held: list[bytes] = []
            while data := await upstream_r.read(65536):
                if hold:
                    held.append(data)
                else:
                    client_w.write(data)
                    await client_w.drain()
            client_w.write(b"".join(held))
            await client_w.drain()
            to_upstream.cancel()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if upstream_w is not None:
                self._streams.discard((client_w, upstream_w))
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError):
                        await writer.wait_closed()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client to server; the client going away ends the server side too."""
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

"""A real SSE client for tests: httpx + httpx-sse, every read bounded in time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

CONTROL = {"ready", "reset", "ping", "bye", "status"}


@dataclass
class Stream:
    """An open SSE response and an iterator over its events."""

    source: EventSource
    seen: list[ServerSentEvent] = field(default_factory=list)
    _iter: AsyncIterator[ServerSentEvent] | None = None

    async def next(self, within: float = 10.0) -> ServerSentEvent:
        if self._iter is None:
            self._iter = self.source.aiter_sse()
        async with asyncio.timeout(within):
            event = await anext(self._iter)
        self.seen.append(event)
        return event

    async def take(self, count: int, types: set[str] | None = None, within: float = 10.0) -> list[ServerSentEvent]:
        """The next ``count`` events whose type is in ``types`` (default: log events, not control ones)."""
        wanted: list[ServerSentEvent] = []
        async with asyncio.timeout(within):
            while len(wanted) < count:
                event = await self.next(within)
                if (types is None and event.event not in CONTROL) or (types is not None and event.event in types):
                    wanted.append(event)
        return wanted

    async def until(self, event_type: str, within: float = 10.0) -> list[ServerSentEvent]:
        """Every log event received before the next event of ``event_type`` (which is not included)."""
        before: list[ServerSentEvent] = []
        async with asyncio.timeout(within):
            while True:
                event = await self.next(within)
                if event.event == event_type:
                    return before
                if event.event not in CONTROL:
                    before.append(event)


@asynccontextmanager
async def open_stream(
    base_url: str, path: str = "/api/stream", headers: dict[str, str] | None = None, **params: str
) -> AsyncIterator[Stream]:
    timeout = httpx.Timeout(10.0, read=30.0)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=timeout) as client,
        aconnect_sse(client, "GET", path, params=params, headers=headers or {}) as source,
    ):
        source.response.raise_for_status()
        yield Stream(source)


def payload(event: ServerSentEvent) -> Any:
    return json.loads(event.data)

"""Noticing a graceful shutdown early, so open streams end at once.

Hypercorn's parent process tells its workers to stop through a
``multiprocessing.Event`` (``shutdown_event``), then waits up to the graceful
timeout for open connections. An SSE stream never finishes by itself, so
without help every deploy would wait out that timeout and then cut streams
without a word. Each worker watches the same event and, as soon as it is set,
ends its streams with a ``bye`` event carrying a short ``retry:``, while
in-flight POSTs complete normally.

The event is the one hypercorn hands to its worker function; we find it on the
worker's ``multiprocessing`` process object. Outside a hypercorn worker (the
test client, a single-process run) there is none, and nothing is watched.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.1


class ShutdownEvent(Protocol):
    def is_set(self) -> bool: ...


def hypercorn_shutdown_event() -> ShutdownEvent | None:
    process = multiprocessing.current_process()
    candidate = getattr(process, "_kwargs", {}).get("shutdown_event")
    if candidate is not None and callable(getattr(candidate, "is_set", None)):
        return candidate  # type: ignore[no-any-return]
    return None


async def watch_shutdown(event: ShutdownEvent, on_shutdown: Callable[[], None]) -> None:
    # A multiprocessing.Event cannot be awaited; polling it is cheap and bounded.
    while not event.is_set():  # noqa: ASYNC110
        await asyncio.sleep(POLL_INTERVAL)
    log.info("graceful shutdown: ending open streams")
    on_shutdown()

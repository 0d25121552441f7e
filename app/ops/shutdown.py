"""Noticing a graceful shutdown early, so open streams end at once.

Hypercorn's parent process tells its workers to stop through a
``multiprocessing.Event`` (``shutdown_event``), then waits up to the graceful
timeout for open connections. An SSE stream never finishes by itself, so
without help every deploy would wait out that timeout and then cut streams
without a word. Each worker watches the same event and, as soon as it is set,
ends its streams with a ``bye`` event carrying a short ``retry:``, while
in-flight POSTs complete normally.

A worker can also get SIGTERM itself: Heroku, honcho, systemd
(``KillMode=control-group``) and ``kill -TERM -<pgid>`` signal every process
of the group, and the master's own stop sends one to each remaining worker.
Hypercorn's workers leave SIGTERM at its default (die at once: no ``bye``,
in-flight requests reset), because with a shutdown event they install no
handler. ``graceful_on_sigterm`` makes a worker treat its own SIGTERM exactly
like the shutdown event: the event as this worker sees it (the object
hypercorn's shutdown trigger polls) reads as set from then on, so hypercorn
stops accepting, finishes in-flight requests within the graceful timeout and
runs the app's shutdown, and the streams get ``bye``. Only this worker is
affected; the shared event is not set (a lone ``kill -TERM <worker>`` restarts
that worker, see ``app/cli/serve.py``).

The event is the one hypercorn hands to its worker function; we find it on the
worker's ``multiprocessing`` process object. Outside a hypercorn worker (the
test client, a single-process run) there is none, and nothing is watched.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
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


def graceful_on_sigterm(event: ShutdownEvent, on_signal: Callable[[], None]) -> None:
    """From now on a SIGTERM to this worker sets ``event`` for this worker alone.

    Hypercorn's worker polls ``event.is_set()`` (the very object in the
    process's kwargs) to decide when to stop, so the instance's ``is_set``
    is wrapped; the shared flag in the parent and other workers is untouched.
    """
    signalled = False
    shared_is_set = event.is_set

    def is_set() -> bool:
        return signalled or shared_is_set()

    def on_sigterm() -> None:
        nonlocal signalled
        if not signalled:
            log.info("SIGTERM: shutting down gracefully")
        signalled = True
        on_signal()

    event.is_set = is_set  # type: ignore[method-assign]
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)


async def watch_shutdown(event: ShutdownEvent, on_shutdown: Callable[[], None]) -> None:
    # A multiprocessing.Event cannot be awaited; polling it is cheap and bounded.
    while not event.is_set():  # noqa: ASYNC110
        await asyncio.sleep(POLL_INTERVAL)
    log.info("graceful shutdown: ending open streams")
    on_shutdown()

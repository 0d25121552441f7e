"""A steady producer for the browser tests: readings 1..total of one series, posted from a thread at a set pace
while the test watches a page switch transports (every number must arrive exactly once, in order)."""

from __future__ import annotations

import threading
import time

import httpx


def start_producer(
    base_url: str, device: str, metric: str, total: int, pause: float, headers: dict[str, str] | None = None
) -> tuple[threading.Thread, threading.Event]:
    """The started thread, and an event set once all ``total`` readings were accepted (202).

    A refused post fails in the thread, where pytest does not see it: the test asserts the event instead.
    """
    sent = threading.Event()

    def produce() -> None:
        with httpx.Client(timeout=5, headers=headers) as client:
            for n in range(1, total + 1):
                r = client.post(base_url + "/api/metrics", json={"device": device, "metric": metric, "value": n})
                assert r.status_code == 202
                time.sleep(pause)  # pacing the producer, not waiting for the page
        sent.set()

    producer = threading.Thread(target=produce)
    producer.start()
    return producer, sent

"""``livedash simulate``: the demo's sensors, as an ordinary HTTP client of any server.

The signals are ``demo.default_signals()`` (the built-in simulator's); every
``interval`` one batch with a reading per signal is POSTed to
``/api/metrics``. A 4xx other than 429 is the caller's mistake (a bad token,
say) and ends it; a 429, a 5xx or a lost connection is retried with backoff.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import httpx

from app.ingest.demo import default_signals
from app.validation import now_ms

MAX_BACKOFF = 30.0


@dataclass
class Simulator:
    url: str
    token: str | None = None
    interval: float = 1.0
    count: int | None = None
    devices: tuple[str, ...] = ()
    seed: int | None = None
    err: TextIO = field(default=sys.stderr)

    def batches(self) -> int:
        rng = random.Random(self.seed)
        signals = [s for s in default_signals() if not self.devices or s.device in self.devices]
        if not signals:
            print(f"livedash simulate: no signals for devices {list(self.devices)}", file=self.err)
            return 2
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        target = self.url.rstrip("/") + "/api/metrics"
        sent, t, failures = 0, 0.0, 0
        with httpx.Client(timeout=10.0, headers=headers) as client:
            while self.count is None or sent < self.count:
                started = time.monotonic()
                ts = now_ms()
                batch = [
                    {"device": s.device, "metric": s.metric, "value": s.step(t, rng), "unit": s.unit, "ts": ts}
                    for s in signals
                ]
                try:
                    response = client.post(target, json=batch)
                except httpx.HTTPError as exc:
                    failures += 1
                    self._retry(f"{exc.__class__.__name__}: {exc}", failures)
                    continue
                if response.status_code == 202:
                    sent, t, failures = sent + 1, t + self.interval, 0
                    if sent == 1:
                        print(
                            f"livedash simulate: posting {len(batch)} readings every {self.interval}s to {target}",
                            file=self.err,
                            flush=True,
                        )
                elif response.status_code == 429 or response.status_code >= 500:
                    failures += 1
                    self._retry(f"{response.status_code} {response.text[:200]}", failures)
                    continue
                else:
                    print(f"livedash simulate: {response.status_code} {response.text[:300]}", file=self.err)
                    return 2
                if self.count is None or sent < self.count:
                    time.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        return 0

    def _retry(self, why: str, failures: int) -> None:
        delay = min(self.interval * 2 ** min(failures, 10), MAX_BACKOFF)
        print(f"livedash simulate: {why}; retrying in {delay:.1f}s", file=self.err, flush=True)
        time.sleep(delay)

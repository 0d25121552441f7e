"""Every Redis key livedash writes, named in one place.

All keys share the configured prefix, so two deployments (or two test runs)
can share one Redis database without touching each other's data, and tests
clean up exactly what they created.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def latest(self) -> str:
        return f"{self.prefix}latest"

    @property
    def latest_ts(self) -> str:
        return f"{self.prefix}latest-ts"

    def history(self, series: str) -> str:
        return f"{self.prefix}history:{series}"

    @property
    def demo_lease(self) -> str:
        return f"{self.prefix}demo-lease"

    @property
    def pattern(self) -> str:
        """Glob that matches every key of this deployment (for SCAN-based cleanup)."""
        return f"{self.prefix}*"


def series_id(device: str, metric: str) -> str:
    """Slugs cannot contain '/', so this is unambiguous."""
    return f"{device}/{metric}"


def device_topic(device: str) -> str:
    return f"device/{device}"

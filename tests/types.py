"""Type aliases for tests (named so pytest does not try to collect them)."""

from quart.typing import TestClientProtocol as QuartClient

__all__ = ["QuartClient"]

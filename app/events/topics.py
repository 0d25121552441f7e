"""Topic filters: which events a stream, a poll or a token's scope wants.

A filter is a comma list of patterns where ``*`` matches any run of
characters. Matching is linear in topic x pattern whatever the pattern: a
hostile ``****...X`` must not pin a worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

MAX_STARS_PER_PATTERN: Final = 8


def glob_parts(pattern: str) -> tuple[str, ...]:
    """``"device/*-1**"`` -> ``("device/", "-1", "")``: the literal runs between stars.

    Consecutive stars collapse into one, since they match what one star matches.
    """
    return tuple(pattern.split("*")) if "*" in pattern else (pattern,)


def glob_match(parts: tuple[str, ...], topic: str) -> bool:
    """Does ``topic`` match the glob whose literal runs are ``parts``?

    No backtracking: each run between two stars is found at its leftmost
    place after the previous one (``str.find``), which is enough because a
    star can absorb whatever lies between. The cost is at most
    len(topic) x len(pattern), whatever the pattern; a regex with one ``.*``
    per star backtracks exponentially on patterns such as ``****...X``.
    """
    if len(parts) == 1:
        return topic == parts[0]
    head, tail = parts[0], parts[-1]
    if len(topic) < len(head) + len(tail) or not topic.startswith(head) or not topic.endswith(tail):
        return False
    pos, end = len(head), len(topic) - len(tail)
    for run in parts[1:-1]:
        if not run:
            continue
        found = topic.find(run, pos, end)
        if found < 0:
            return False
        pos = found + len(run)
    return True


class TopicFilter:
    """A comma list of topic patterns where ``*`` matches any run of characters."""

    __slots__ = ("_everything", "_exact", "_globs", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(p for p in (p.strip() for p in patterns) if p)
        self._everything = not self.patterns or "*" in self.patterns
        self._exact = frozenset(p for p in self.patterns if "*" not in p)
        self._globs = tuple(glob_parts(p) for p in self.patterns if "*" in p)

    @classmethod
    def parse(cls, value: str | None) -> TopicFilter:
        return cls((value or "").split(","))

    @property
    def everything(self) -> bool:
        return self._everything

    @property
    def owner(self) -> str | None:
        """Whose stream this is, for per-owner stream counts (``Hub.streams_of``); None: nobody's."""
        return None

    def take_claim(self) -> bool:
        """Hand a slot already counted for ``owner`` (``Hub.claim``) to the subscription; False: none held."""
        return False

    def matches(self, topic: str) -> bool:
        if self._everything or topic in self._exact:
            return True
        return any(glob_match(parts, topic) for parts in self._globs)

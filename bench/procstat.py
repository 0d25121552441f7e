"""CPU and memory of a process tree, read straight from ``/proc``.

The bench measures servers from outside: CPU is ``utime + stime`` of the
process and every descendant (hypercorn's master and its workers, nginx's
master and its workers), RSS is the sum of their resident sets. Run-queue
wait is the time their threads were ready to run but had no CPU
(``/proc/<pid>/task/<tid>/schedstat``, second field): on a shared machine,
what other processes took from the server (or the load generator).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its ')' splits cleanly.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    rss_bytes: int
    wait_seconds: float = 0.0


def steal_seconds() -> float:
    """CPU time the hypervisor gave other guests while this machine's CPUs wanted it (all CPUs, /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def run_queue_wait(pid: int) -> float:
    """Seconds the threads of ``pid`` (alive now) spent runnable but not running; 0.0 if unknown."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
    return total / 1e9


def usage(pids: list[int]) -> Usage:
    cpu = 0.0
    rss = 0
    wait = 0.0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the name: state=0, ppid=1, ... utime=11, stime=12 (fields 14/15 of proc(5)).
        cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        with contextlib.suppress(OSError):  # the process may have just exited
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
        wait += run_queue_wait(pid)
    return Usage(cpu, rss, wait)


def tree_usage(root: int | None) -> Usage:
    if root is None:
        return Usage(0.0, 0)
    return usage(descendants(root))

"""``python -m bench.timeline``: one fan-out, event by event, to tell a stall from a starved CPU.

    python -m bench.timeline --streams 1000 --rate 10 --duration 20
    python -m bench.timeline --py-spy /tmp/worker.speedscope.json   # and a profile of the worker

Starts one livedash worker (as ``bench.run`` does, on a private embedded
Redis), opens the streams, posts for ``duration`` and prints, for every event
whose slowest sampled arrival exceeded ``--slow`` ms, its fastest / median /
slowest arrival and what the worker did over that time: milliseconds running
and milliseconds ready to run but without a CPU (its threads' run-queue wait,
``/proc/<pid>/task/*/schedstat``, polled every 5 ms). A stall inside the
process shows as running time (a GC pause, a long callback); a starved
process as waiting time. With ``--py-spy`` the worker is also profiled (py-spy
``--nonblocking``, 250 Hz, speedscope format) for the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from .loadgen import Sent, open_readers, publish_paced
from .peers import Peer, private_redis, start_livedash
from .procstat import descendants
from .run import raise_fd_limit

HOST = "127.0.0.1"
POLL = 0.005
PY_SPY = Path(sys.executable).with_name("py-spy")


def worker_pid(master: int) -> int:
    for pid in descendants(master):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return master


def task_stats(pid: int) -> tuple[float, float]:
    """Seconds running and seconds waiting for a CPU, over the threads of ``pid``."""
    run = wait = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
        except OSError:
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return run / 1e9, wait / 1e9


class Poller(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.rows: list[tuple[float, float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.rows.append((time.perf_counter(), *task_stats(self.pid)))
            time.sleep(POLL)

    def window(self, start: float, end: float) -> tuple[float, float, float]:
        """Wall, running and waiting milliseconds between two perf_counter times."""
        times = [r[0] for r in self.rows]
        i = min(bisect.bisect_left(times, start), len(times) - 1)
        j = min(bisect.bisect_left(times, end), len(times) - 1)
        a, b = self.rows[i], self.rows[j]
        return (b[0] - a[0]) * 1000, (b[1] - a[1]) * 1000, (b[2] - a[2]) * 1000


async def measure(args: argparse.Namespace) -> None:
    raise_fd_limit()
    extra = dict(item.split("=", 1) for item in args.livedash_env)
    with private_redis("livedash-timeline-") as (workdir, redis):
        peer = start_livedash(workdir, redis.url, 1, extra)
        try:
            assert peer.pid is not None
            await _run(args, peer, worker_pid(peer.pid))
        finally:
            peer.stop()


async def _run(args: argparse.Namespace, peer: Peer, worker: int) -> None:
    sent = Sent()
    readers = await open_readers(HOST, peer.port, peer.stream_path, args.streams, sent, args.sample)
    spy = None
    try:
        await asyncio.sleep(1.0)
        if args.py_spy:
            command = [str(PY_SPY), "record", "--pid", str(worker), "--nonblocking", "-r", "250"]
            command += ["--format", "speedscope", "-o", args.py_spy, "-d", str(int(args.duration) + 4)]
            spy = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await asyncio.sleep(1.5)
        poller = Poller(worker)
        poller.start()
        await publish_paced(HOST, peer.port, peer.publish_path, peer.body_for, args.rate, args.duration, sent, 8)
        await asyncio.sleep(2.0)
        poller.stop.set()
        poller.join()
    finally:
        for reader in readers:
            reader.close()
        if spy is not None:
            await asyncio.wait_for(spy.wait(), 30)
    by_seq: dict[int, list[float]] = {}
    for reader in readers:
        for seq, latency in zip(reader.seqs, reader.latencies, strict=True):
            by_seq.setdefault(seq, []).append(latency * 1000)
    pings = sorted(t for reader in readers for t in reader.pings)
    report(args, sent, by_seq, poller)
    after_ping(args, sent, by_seq, pings)


def report(args: argparse.Namespace, sent: Sent, by_seq: dict[int, list[float]], poller: Poller) -> None:
    t0 = min(sent.at.values())
    total = poller.window(poller.rows[0][0], poller.rows[-1][0])
    everything = sorted(x for values in by_seq.values() for x in values)
    p99 = everything[int(len(everything) * 0.99)] if everything else None
    print(f"{len(by_seq)} events, {len(everything)} arrivals sampled; p99 {p99:.1f} ms, max {everything[-1]:.1f} ms")
    print(f"worker over {total[0]:.0f} ms: ran {total[1]:.0f} ms, waited for a CPU {total[2]:.0f} ms")
    slow = {"ran": 0.0, "waited": 0.0, "wall": 0.0}
    for seq in sorted(by_seq):
        values = sorted(by_seq[seq])
        worst = values[-1]
        if worst <= args.slow:
            continue
        wall, ran, waited = poller.window(sent.at[seq], sent.at[seq] + worst / 1000)
        slow["ran"], slow["waited"], slow["wall"] = slow["ran"] + ran, slow["waited"] + waited, slow["wall"] + wall
        print(
            f"  seq {seq:4d} at {1000 * (sent.at[seq] - t0):7.0f} ms: fastest {values[0]:6.1f} "
            f"median {values[len(values) // 2]:6.1f} slowest {worst:6.1f} ms; worker ran {ran:5.1f} ms, "
            f"waited {waited:5.1f} ms"
        )
    if slow["wall"]:
        print(
            f"during slow events the worker ran {100 * slow['ran'] / slow['wall']:.0f} % of the time and "
            f"waited for a CPU {100 * slow['waited'] / slow['wall']:.0f} %"
        )


def after_ping(args: argparse.Namespace, sent: Sent, by_seq: dict[int, list[float]], pings: list[float]) -> None:
    """Events sent within ``--ping-window`` of a keep-alive ping's arrival against the others.

    Each keep-alive tick is one more write to every stream: does its burst delay the events around it?
    """
    ticks: list[float] = []
    for t in pings:  # one tick reaches all sampled streams within its burst: keep its first arrival
        if not ticks or t - ticks[-1] > 0.5:
            ticks.append(t)
    if not ticks:
        print("no keep-alive ping during the load")
        return
    near: list[float] = []
    rest: list[float] = []
    for seq, values in by_seq.items():
        sent_at = sent.at[seq]
        i = bisect.bisect_right(ticks, sent_at + args.ping_window / 1000)
        follows = i > 0 and sent_at - ticks[i - 1] < args.ping_window / 1000
        (near if follows else rest).append(max(values))
    for name, group in (("near a ping", near), ("the others", rest)):
        if group:
            group.sort()
            print(
                f"events sent within ±{args.ping_window:g} ms of a ping's arrival ({name}): {len(group)}, "
                f"slowest arrival median {group[len(group) // 2]:.1f} ms, worst {group[-1]:.1f} ms"
            )
    print(f"{len(ticks)} keep-alive ticks seen")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.timeline", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--sample", type=int, default=100, help="streams that measure latency")
    parser.add_argument("--slow", type=float, default=100.0, help="ms: list events slower than this")
    parser.add_argument("--ping-window", type=float, default=150.0, help="ms around a ping's arrival")
    parser.add_argument("--py-spy", default=None, metavar="PATH", help="also profile the worker into PATH")
    parser.add_argument("--livedash-env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

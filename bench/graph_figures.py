"""Figures of the graph bench (bench/bench_graph.py): percentiles of a list of times, and
the CPU of each node process, of the bench and of the machine over a window, from /proc
(utime + stime of every thread and child process)."""

from __future__ import annotations

import os
import time


def pct(values, q) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def stats(values) -> dict:
    return {
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "max": max(values) if values else float("nan"),
        "mean": sum(values) / len(values) if values else float("nan"),
        "n": len(values),
    }


def ms(x) -> str:
    return "-" if x is None or x != x else f"{x * 1000:.1f}"


def say(text: str = "") -> None:
    print(text, flush=True)


# -- CPU from /proc --------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return kids


def process_ticks(pid: int, descendants: bool = True) -> int:
    """utime + stime of a process (all its threads), plus its descendants' if asked."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
        except (OSError, IndexError, ValueError):
            continue
        if descendants:
            todo += _children(p)
    return total


def machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4]  # all but idle and iowait (guest is inside user)


class CpuWindow:
    """CPU of each node process, of this process and of the machine over one window."""

    def __init__(self, pids: dict[str, int]):
        self.pids = dict(pids)
        self.t0 = time.monotonic()
        self.start = self._sample()

    def _sample(self) -> dict:
        out = {name: process_ticks(pid) for name, pid in self.pids.items()}
        out["bench"] = process_ticks(os.getpid(), descendants=False)
        out["machine"] = machine_busy_ticks()
        return out

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        end = self._sample()
        pct_core = {k: (end[k] - self.start[k]) / CLK_TCK / wall * 100 for k in end}
        graph = sum(pct_core[n] for n in self.pids)
        return {
            "seconds": wall,
            "percent_of_core": pct_core,
            "graph_percent": graph,
            "share_of_graph": {n: pct_core[n] / graph if graph else float("nan") for n in self.pids},
            "cores": os.cpu_count(),
            "pids": self.pids,
        }

"""Measuring helpers shared by the benchmarks: CPU time of processes from /proc (user + system: steadier
than wall-clock figures on a shared 2-core machine), the processes of a service, its listening sockets,
and percentiles."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, *, waited_children: bool = False) -> float:
    """utime + stime of a process, all its threads (+ cutime + cstime: the children it has reaped); 0 when
    it is gone."""
    try:
        f = _stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if waited_children else 0)
    return ticks / TICKS


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (e.g. the processes of `serve --processes N`)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except FileNotFoundError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


def tree_cpu(pid: int) -> float:
    """A process, its live descendants and the children it reaped (PostgreSQL backends come and go)."""
    return cpu_seconds(pid, waited_children=True) + sum(tree_cpu(c) for c in children(pid))


def postmaster_pid(pgdata: Path) -> int:
    return int((Path(pgdata) / "postmaster.pid").read_text().split()[0])


def listeners(port: int) -> int:
    """Listening sockets on ``port`` (one per serve process with SO_REUSEPORT)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except FileNotFoundError:
            pass
    return n


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank); NaN for no values."""
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] if values else float("nan")

"""CPU time of processes from /proc (user + system): steadier than wall-clock figures on a shared
2-core machine. Benchmarks report CPU per event/request/result for the service processes and for the
servers they drive (PostgreSQL, nats-server), so a change can be judged even when the machine is busy."""
from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, all its threads."""
    f = _stat(pid)
    return (int(f[11]) + int(f[12])) / TICK


def tree_cpu_seconds(root: int) -> float:
    """CPU of ``root``, of its live descendants, and of the children it has already reaped (e.g. the
    PostgreSQL postmaster and its backends, live or exited)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total = 0.0
    for pid in tree:
        try:
            f = _stat(pid)
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / TICK
        if pid == root:
            total += (int(f[13]) + int(f[14])) / TICK  # reaped children
    return total


def postmaster_pid(pgdata: Path) -> int:
    return int((Path(pgdata) / "postmaster.pid").read_text().split()[0])

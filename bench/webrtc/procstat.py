"""CPU and memory of processes and cores, from /proc (Linux)."""

from __future__ import annotations

import os
import time
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process (all its threads)."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK


def tree(pid: int) -> list[int]:
    """The process and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except OSError:
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    return {p: cpu_seconds(p) for p in tree(pid)}


def core_times() -> dict[str, tuple[int, int]]:
    """Per core: (busy jiffies, total jiffies)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *values = line.split()
            v = [int(x) for x in values]
            idle = v[3] + v[4]
            out[name] = (sum(v) - idle, sum(v))
    return out


def max_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class CpuWindow:
    """Started on construction; :meth:`stop` gives the server tree's and the clients' CPU (% of one
    core) and every core's busy % over the window."""

    def __init__(self, server_pid: int, clients_pid: int) -> None:
        self.server_pid, self.clients_pid = server_pid, clients_pid
        self.server0 = tree_cpu_seconds(server_pid)
        self.clients0 = sum(tree_cpu_seconds(clients_pid).values())
        self.cores0 = core_times()
        self.t0 = time.monotonic()

    def stop(self) -> dict[str, object]:
        server1 = tree_cpu_seconds(self.server_pid)
        clients1 = sum(tree_cpu_seconds(self.clients_pid).values())
        cores1 = core_times()
        elapsed = time.monotonic() - self.t0
        server = sum(v - self.server0.get(p, 0.0) for p, v in server1.items())
        busy = {
            name: round(100 * (cores1[name][0] - b0) / max(1, cores1[name][1] - t0), 1)
            for name, (b0, t0) in self.cores0.items()
            if name in cores1
        }
        return {
            "window_s": round(elapsed, 1),
            "server_cpu_pct_of_one_core": round(100 * server / elapsed, 1),
            "server_processes": len(server1),
            "clients_cpu_pct_of_one_core": round(100 * (clients1 - self.clients0) / elapsed, 1),
            "core_busy_pct": busy,
        }

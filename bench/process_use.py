"""What the processes of a run use, read from Linux's /proc (and `ss`): the CPU time of the
server's processes, Postgres and the bench's own children (wrk), how busy the machine was, how
the connections fell on the HTTP processes, and the resident memory of a process tree."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    wall: float
    server: dict[int, float]  # CPU seconds of each of the server's processes
    postgres: dict[int, float]  # of each postgres process (other databases' too)
    children: float  # of this script's waited-for children: the wrk runs
    busy: int  # machine-wide busy jiffies (all but idle and iowait)
    total: int


@dataclass(frozen=True)
class CpuUse:
    """Where the CPU went during one run, in CPU seconds (and cores for the parts)."""

    wall: float
    server: float
    postgres: float
    wrk: float
    machine_busy: float  # fraction of all cores
    other: float  # cores busy with anything else (other people's processes, the kernel...)
    http_children: list[float]  # cores each HTTP child used, busiest first

    def per_request_ms(self, requests: int) -> tuple[float, float, float]:
        if requests <= 0:
            return (float("nan"),) * 3
        return (
            self.server / requests * 1000,
            self.postgres / requests * 1000,
            self.wrk / requests * 1000,
        )

    def line(self, requests: int) -> str:
        server, postgres, wrk = self.per_request_ms(requests)
        children = " + ".join(f"{c:.2f}" for c in self.http_children)
        return (
            f"CPU per request: server {server:.3f} ms, Postgres {postgres:.3f} ms, "
            f"wrk {wrk:.3f} ms; cores: HTTP children {children}, "
            f"Postgres {self.postgres / self.wall:.2f}, wrk {self.wrk / self.wall:.2f}, "
            f"anything else {self.other:.2f}; machine {self.machine_busy:.0%} busy"
        )


def cpu_of(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _cpu_of_all(pids: Sequence[int]) -> dict[int, float]:
    found = {pid: cpu_of(pid) for pid in pids}
    return {pid: cpu for pid, cpu in found.items() if cpu is not None}


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def postgres_cpu() -> dict[int, float]:
    """CPU seconds so far of every postgres process, by pid (compare two with `spent`)."""
    return _cpu_of_all(_postgres_pids())


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the processes of `after` spent since `before` (new ones: all of theirs)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def cpu_sample(server_pid: int) -> CpuSample:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSample(
        wall=time.monotonic(),
        server=_cpu_of_all(process_tree(server_pid)),
        postgres=_cpu_of_all(_postgres_pids()),
        children=children.ru_utime + children.ru_stime,
        busy=sum(fields) - idle,
        total=sum(fields),
    )


def _spent(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    """CPU seconds each process spent in between; one that ended meanwhile is left out."""
    return {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}


def cpu_between(before: CpuSample, after: CpuSample, http_children: Sequence[int]) -> CpuUse:
    wall = after.wall - before.wall
    total = after.total - before.total
    busy = (after.busy - before.busy) / total if total else float("nan")
    server_each = _spent(before.server, after.server)
    server = sum(server_each.values())
    postgres = sum(_spent(before.postgres, after.postgres).values())
    wrk = after.children - before.children
    cores = len(os.sched_getaffinity(0))
    other = (busy * cores * wall - server - postgres - wrk) / wall if wall > 0 else float("nan")
    children = sorted((server_each.get(pid, 0.0) / wall for pid in http_children), reverse=True)
    return CpuUse(wall, server, postgres, wrk, busy, max(0.0, other), children)


def connections_by_process(port: int, pids: Sequence[int]) -> list[int]:
    """Established connections to `port` each of `pids` holds, most first (needs `ss`)."""
    try:
        done = subprocess.run(  # noqa: S603 - a fixed command line
            ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    counts = dict.fromkeys(pids, 0)
    for line in done.stdout.splitlines():
        for pid in pids:
            if f"pid={pid}," in line:
                counts[pid] += 1
    return sorted(counts.values(), reverse=True)


@dataclass(frozen=True)
class Memory:
    """Resident memory of a process tree in MB (10^6 bytes): RSS, the target's measure, and PSS
    (each shared page counted once, split between the processes that share it)."""

    rss_mb: float
    pss_mb: float
    processes: list[tuple[int, str, float]]  # pid, name, RSS MB

    def line(self) -> str:
        each = ", ".join(f"{name} {rss:.0f}" for _, name, rss in self.processes)
        return f"RSS {self.rss_mb:.1f} MB (PSS {self.pss_mb:.1f} MB); per process, MB: {each}"


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    children = _children_by_parent()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        tree.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return tree


def _status_kib(pid: int, file: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    if "resource_tracker" in text:
        return "resource_tracker"
    if "multiprocessing.spawn" in text:
        return "http child"
    if "service.runtime.supervisor" in text:
        return "serve supervisor"  # the `serve --workers N` parent, once its children run
    if " serve" in text:
        return "serve HTTP"  # a forked child keeps its parent's command line
    return text[:30]


def memory_of(root: int) -> Memory:
    processes = []
    rss = pss = 0
    for pid in process_tree(root):
        rss_kib = _status_kib(pid, "status", "VmRSS")
        rss += rss_kib
        pss += _status_kib(pid, "smaps_rollup", "Pss")
        processes.append((pid, process_name(pid), rss_kib * 1024 / 1e6))
    return Memory(rss * 1024 / 1e6, pss * 1024 / 1e6, processes)

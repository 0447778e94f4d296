"""HTTP throughput, latency and memory of `authledger serve --workers 2`, measured with wrk.

    .venv/bin/python bench/http_load.py [--quick] [--database-url URL] [--workers N]
                                   [--registrations N] [--more N]

Creates a fresh database on the server behind the admin URL (default
postgresql://postgres@127.0.0.1:5432/postgres, or AUTHLEDGER_BENCH_DATABASE_URL), runs
`authledger migrate` against it, starts `authledger serve --workers 2` on a free loopback port
(NATS at nats://127.0.0.1:4222 with a stream and subject prefix of its own, rate limits off,
logs at warning level as JSON into a file), waits for /readyz, and measures with wrk
(`wrk -t1`, so the client takes one core at most; client, server and Postgres share the
machine):

a. GET /healthz, a static JSON answer of the same server: the baseline;
b. anonymous registrations, POST /agent/auth: requests/s, p50/p99 latency, non-2xx answers,
   and a check that every 200 answer's registration is in the log (by its request id, which
   the server echoes in X-Request-ID and records as the events' correlation id);
c. GET /api/me with one API key (from one registration made first);
d. POST /agent/auth/claim/complete with unknown claim tokens (401 expected) while the database
   is nearly empty, and again once it holds --registrations (50,000) registrations, made
   through the same HTTP endpoint with wrk (bounded in count and time);
e. resident memory (RSS, and PSS) of the server: the `serve` parent and every process under
   it, right after start, after --registrations and after --more (20,000) registrations more.

Each of a-d runs at 16 and 64 connections for 10 s (5 s with --quick) after a short warm-up.
For every run the script also reports the CPU time the server's processes, Postgres and wrk
spent per request, how busy the machine was (and how much of it went to anything else: other
people's work on a shared machine), and how the connections were spread over the HTTP
processes. The wrk scripts are in bench/wrk/. Prints the machine, every run, and tables of the
figures and of the issue's targets. Stops the server (SIGTERM) and drops the database at the
end, also on failure. Needs wrk (`apt-get install wrk`), `ss` and Linux (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from machine import cpu_model, load_average, memory_total, other_sessions

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
NATS_URL = "nats://127.0.0.1:4222"
HOST = "127.0.0.1"
WORKERS = 2
CONNECTIONS = (16, 64)
WRK_DIR = Path(__file__).resolve().parent / "wrk"
WRK_TIMEOUT = "5s"  # a request slower than this counts as a wrk timeout error
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
FILL_CONNECTIONS = 64
FILL_MAX_SECONDS = 150  # a cap on each fill run; the count reached is reported as it is
SETTLE_SECONDS = 1.0  # after a run: requests wrk left in flight finish before we count
CODE = ("events", "projections", "service", "workers", "migrations")  # what the server runs
REGISTER_BODY = b'{"type":"anonymous","requested_credential_type":"api_key"}'

# The targets.
TARGET_REGISTRATION = 0.3  # registrations/s >= 0.3x static, every event committed
TARGET_ME = 0.8  # /api/me >= 0.8x static
TARGET_P99_MS = 100.0  # p99 of registrations at 64 connections
TARGET_COMPLETE = 0.9  # complete-unknown with the registrations >= 0.9x without
TARGET_RSS_MB = 150.0  # all server processes, after the registrations
FLAT_TOLERANCE = 0.10  # "flat": the next registrations add at most 10 %


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- CPU and connections -------------------------------------------------------------------

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


def _cpu_of(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _cpu_of_all(pids: Sequence[int]) -> dict[int, float]:
    found = {pid: _cpu_of(pid) for pid in pids}
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


# -- wrk -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run reported (via bench/wrk/report.lua)."""

    name: str
    connections: int
    requests: int
    seconds: float
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu: CpuUse | None = None
    split: list[int] = field(default_factory=list)  # connections per HTTP child, mid-run
    ok_ids: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def count(self, status: int) -> int:
        return self.statuses.get(status, 0)

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())

    @property
    def lopsided(self) -> bool:
        """One HTTP process held 90 % or more of the connections (mid-run)."""
        return len(self.split) > 1 and max(self.split) >= 0.9 * sum(self.split)

    def line(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())) or "none"
        errors = ", ".join(f"{k} {v}" for k, v in self.socket_errors.items() if v) or "none"
        split = " + ".join(map(str, self.split)) or "?"
        text = (
            f"{self.name:<24} c={self.connections:<3} {self.rate:8,.0f} req/s  "
            f"p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms  max {self.max_ms:7.1f} ms\n"
            f"{'':<11}{self.requests} responses in {self.seconds:.1f} s; statuses {statuses}; "
            f"socket errors {errors}; connections per HTTP child {split}"
        )
        if self.cpu is not None:
            text += f"\n{'':<11}{self.cpu.line(self.requests)}"
        return text


StopWhen = Callable[[], Awaitable[bool]]


class Wrk:
    def __init__(self, server: Server, workdir: Path, threads: int = 1) -> None:
        self.server = server
        self.workdir = workdir
        self.threads = threads
        self.runs = 0

    async def run(
        self,
        name: str,
        script: str,
        path: str,
        *,
        connections: int,
        seconds: float,
        env: Mapping[str, str] | None = None,
        collect_ids: bool = False,
        max_requests: int | None = None,
        stop_when: StopWhen | None = None,
    ) -> WrkRun:
        """One `wrk -t<threads>` run of `seconds`, or shorter: once `stop_when()` says so
        (polled), wrk gets SIGINT and reports what it did. With `max_requests`, the thread
        stops sending after that many responses (wrk itself waits for the end of -d, or that
        SIGINT)."""
        self.runs += 1
        report = self.workdir / f"wrk-{self.runs}.json"
        ids = self.workdir / f"wrk-{self.runs}.ids"
        extra = {"WRK_REPORT": str(report), **(env or {})}
        if collect_ids:
            extra["WRK_IDS"] = str(ids)
        if max_requests is not None:
            extra["WRK_MAX_REQUESTS"] = str(max_requests)
        argv = [
            "wrk",
            f"-t{min(self.threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "--timeout",
            WRK_TIMEOUT,
            "-s",
            str(WRK_DIR / script),
            self.server.url + path,
        ]
        children = self.server.http_children()
        before = cpu_sample(self.server.pid)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, **extra},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        split: list[int] = []
        try:
            waiting = asyncio.ensure_future(proc.communicate())
            deadline = time.monotonic() + seconds + 30
            split_at = time.monotonic() + min(1.0, seconds / 2)
            interrupted = False
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=0.25)
                if waiting.done():
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"wrk ran past {seconds + 30:g} s")
                if not split and time.monotonic() >= split_at:
                    split = connections_by_process(self.server.port, children)
                if stop_when is not None and not interrupted and await stop_when():
                    proc.send_signal(signal.SIGINT)
                    interrupted = True
            out, err = waiting.result()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        cpu = cpu_between(before, cpu_sample(self.server.pid), children)
        if proc.returncode != 0 or not report.exists():
            raise RuntimeError(
                f"wrk failed (status {proc.returncode}): {err.decode().strip()} "
                f"{out.decode().strip()}"
            )
        data: dict[str, Any] = json.loads(report.read_text())
        latency = data["latency_us"]
        ok_ids = ids.read_text().split() if collect_ids and ids.exists() else []
        return WrkRun(
            name=name,
            connections=connections,
            requests=int(data["requests"]),
            seconds=int(data["duration_us"]) / 1e6,
            statuses={int(k): int(v) for k, v in data["statuses"].items()},
            socket_errors={k: int(v) for k, v in data["errors"].items() if k != "status"},
            p50_ms=float(latency["p50"] or 0) / 1000,
            p99_ms=float(latency["p99"] or 0) / 1000,
            max_ms=float(latency["max"] or 0) / 1000,
            cpu=cpu,
            split=split,
            ok_ids=ok_ids,
        )


def wrk_version() -> str:
    try:
        done = subprocess.run(
            ["wrk", "--version"],  # noqa: S607 - wrk from PATH, as the runs use it
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout + done.stderr).strip().splitlines()[0].split(" [")[0]


# -- the server ----------------------------------------------------------------------------


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


def _process_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    if "resource_tracker" in text:
        return "resource_tracker"
    if "multiprocessing.spawn" in text:
        return "http child"
    if " serve" in text:
        return "serve parent"
    return text[:30]


def memory_of(root: int) -> Memory:
    processes = []
    rss = pss = 0
    for pid in process_tree(root):
        rss_kib = _status_kib(pid, "status", "VmRSS")
        rss += rss_kib
        pss += _status_kib(pid, "smaps_rollup", "Pss")
        processes.append((pid, _process_name(pid), rss_kib * 1024 / 1e6))
    return Memory(rss * 1024 / 1e6, pss * 1024 / 1e6, processes)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def authledger_command() -> str:
    beside = Path(sys.executable).parent / "authledger"
    if beside.exists():
        return str(beside)
    found = shutil.which("authledger")
    if found is None:
        raise SystemExit("the authledger command is not installed (pip install -e .)")
    return found


class Server:
    """`authledger serve --workers N` as a subprocess in a session of its own."""

    def __init__(self, env: Mapping[str, str], port: int, log_path: Path, workers: int) -> None:
        self.env = dict(env)
        self.port = port
        self.log_path = log_path
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop_status: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the server is not running")
        return self.proc.pid

    def http_children(self) -> list[int]:
        """The HTTP processes: the parent's children, less multiprocessing's resource tracker."""
        return [
            pid
            for pid in process_tree(self.pid)[1:]
            if _process_name(pid) not in ("resource_tracker",)
        ]

    def start(self) -> None:
        argv = [
            authledger_command(),
            "serve",
            "--workers",
            str(self.workers),
            "--host",
            HOST,
            "--port",
            str(self.port),
        ]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own command line
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with status {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                status, body = await asyncio.to_thread(http_call, "GET", self.url + "/readyz")
            except OSError as exc:
                last = repr(exc)
            else:
                if status == 200:
                    return
                last = f"{status} {body[:200]!r}"
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the server was not ready within {READY_TIMEOUT:g} s: {last}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to its process group if it has not stopped in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.stop_status = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"the server did not stop within {STOP_TIMEOUT:g} s: killing its group")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.stop_status = self.proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> list[str]:
        """Lines of the server's log at level error or above (or not JSON at all)."""
        problems = []
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ["(no server log)"]
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                problems.append(line)
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                problems.append(line)
        return problems


def http_call(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """One request on a fresh connection (set-up and checks only; wrk does the load)."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"only the local server: {url}")
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only, checked above
        url, data=body, method=method, headers=dict(headers or {})
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


# -- the database --------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class Log:
    """Questions to the bench database's event log."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def registrations(self) -> int:
        value = await self.conn.fetchval(
            "SELECT count(*) FROM events WHERE type = 'registration.created'"
        )
        return int(value)

    async def projected_registrations(self) -> int:
        """The registrations read model's count: cheaper, for polling."""
        value = await self.conn.fetchval("SELECT count(*) FROM registrations")
        return int(value)

    async def head(self) -> int:
        value = await self.conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
        return int(value)

    async def registration_ids_after(self, position: int) -> list[str]:
        """The correlation (request) ids of the registrations recorded after `position`."""
        rows = await self.conn.fetch(
            "SELECT metadata->>'correlation_id' AS id FROM events "
            "WHERE type = 'registration.created' AND position > $1",
            position,
        )
        return [str(r["id"]) for r in rows]

    async def checkpoint(self) -> None:
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await self.conn.execute("CHECKPOINT")


@dataclass(frozen=True)
class Committed:
    """Whether every registration answered 200 is in the log."""

    ok: int  # 200 answers wrk saw
    ids: int  # distinct request ids among them (X-Request-ID)
    found: int  # of those, registrations in the log with that request id
    new_events: int  # registration.created recorded during the run
    connections: int

    @property
    def in_flight(self) -> int:
        """Recorded but never seen by wrk: requests it left in flight when it stopped."""
        return self.new_events - self.found

    @property
    def holds(self) -> bool:
        return self.ids == self.found == self.ok and 0 <= self.in_flight <= self.connections

    def line(self) -> str:
        verdict = "yes" if self.holds else "NO"
        return (
            f"{self.ok} answered 200, {self.found} of them in the log; "
            f"{self.new_events} registration.created recorded = {self.found} + "
            f"{self.in_flight} still in flight when wrk stopped (at most {self.connections}); "
            f"every 200 committed: {verdict}"
        )


# -- the machine ---------------------------------------------------------------------------


def _commit() -> str:
    """The commit measured, and whether the service's code differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 - a fixed command line
            ["git", "status", "--porcelain", "--", *CODE],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = sorted({line[3:] for line in dirty if line.strip()})
    return head + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


async def describe(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    version = str(await conn.fetchval("SHOW server_version"))
    sync = str(await conn.fetchval("SHOW synchronous_commit"))
    return [
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("cpu", cpu_model()),
        ("memory", memory_total()),
        ("os", platform.platform()),
        ("postgres", f"{version}, same host, TCP on 127.0.0.1, synchronous_commit {sync}"),
        ("python", platform.python_version()),
        ("wrk", wrk_version()),
        ("commit", _commit()),
        ("load average at start", load_average()),
        ("other client sessions at start", str(await other_sessions(conn))),
    ]


# -- the run -------------------------------------------------------------------------------


@dataclass
class Figures:
    static: dict[int, WrkRun] = field(default_factory=dict)
    register: dict[int, WrkRun] = field(default_factory=dict)
    committed: dict[int, Committed] = field(default_factory=dict)
    me: dict[int, WrkRun] = field(default_factory=dict)
    complete_before: dict[int, WrkRun] = field(default_factory=dict)
    complete_after: dict[int, WrkRun] = field(default_factory=dict)
    registrations_before: int = 0
    registrations_after: int = 0
    registrations_more: int = 0
    fills: list[WrkRun] = field(default_factory=list)
    memory: list[tuple[str, Memory]] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    seconds: float
    warmup: float
    registrations: int
    more: int
    workers: int


class Bench:
    def __init__(self, plan: Plan, wrk: Wrk, server: Server, events: Log) -> None:
        self.plan, self.wrk, self.server, self.events = plan, wrk, server, events
        self.figures = Figures()

    async def measure(
        self,
        name: str,
        script: str,
        path: str,
        into: dict[int, WrkRun],
        env: Mapping[str, str] | None = None,
    ) -> None:
        """A warm-up at the highest connection count, then one run at each."""
        top = max(CONNECTIONS)
        await self.wrk.run(
            "warm-up", script, path, connections=top, seconds=self.plan.warmup, env=env
        )
        for connections in CONNECTIONS:
            run = await self.wrk.run(
                name, script, path, connections=connections, seconds=self.plan.seconds, env=env
            )
            into[connections] = run
            log(run.line())

    async def registrations(self) -> None:
        top, warmup = max(CONNECTIONS), self.plan.warmup
        await self.wrk.run(
            "warm-up", "register.lua", "/agent/auth", connections=top, seconds=warmup
        )
        for connections in CONNECTIONS:
            await asyncio.sleep(SETTLE_SECONDS)
            await self.events.checkpoint()
            head, before = await self.events.head(), await self.events.registrations()
            run = await self.wrk.run(
                "POST /agent/auth",
                "register.lua",
                "/agent/auth",
                connections=connections,
                seconds=self.plan.seconds,
                collect_ids=True,
            )
            await asyncio.sleep(SETTLE_SECONDS)
            recorded = await self.events.registration_ids_after(head)
            after = await self.events.registrations()
            ok_ids = set(run.ok_ids)
            committed = Committed(
                ok=run.count(200),
                ids=len(ok_ids),
                found=len(ok_ids & set(recorded)),
                new_events=after - before,
                connections=connections,
            )
            self.figures.register[connections] = run
            self.figures.committed[connections] = committed
            log(run.line())
            log("  " + committed.line())

    async def fill_to(self, total: int) -> int:
        """Register through the HTTP endpoint until the log holds `total` registrations (or
        FILL_MAX_SECONDS pass: the count reached is reported as it is); the count reached."""
        have = await self.events.registrations()
        if have >= total:
            return have

        async def enough() -> bool:
            return await self.events.projected_registrations() >= total

        run = await self.wrk.run(
            "fill",
            "register.lua",
            "/agent/auth",
            connections=FILL_CONNECTIONS,
            seconds=FILL_MAX_SECONDS,
            max_requests=total - have,
            stop_when=enough,
        )
        await asyncio.sleep(SETTLE_SECONDS)
        now = await self.events.registrations()
        self.figures.fills.append(run)
        log(f"fill: {now - have:,} registrations, {now:,} in the log\n{run.line()}")
        return now

    def remember_memory(self, label: str) -> None:
        memory = memory_of(self.server.pid)
        self.figures.memory.append((label, memory))
        log(f"memory {label}: {memory.line()}")

    async def run(self) -> Figures:
        f, plan, url = self.figures, self.plan, self.server.url
        await asyncio.sleep(SETTLE_SECONDS)
        self.remember_memory("right after start")

        log("(a) static: GET /healthz")
        await self.measure("GET /healthz", "get.lua", "/healthz", f.static)

        log("(c) authenticated: GET /api/me")
        status, body = await asyncio.to_thread(
            http_call,
            "POST",
            url + "/agent/auth",
            REGISTER_BODY,
            {"Content-Type": "application/json"},
        )
        if status != 200:
            raise RuntimeError(f"registration answered {status}: {body[:300]!r}")
        api_key = str(json.loads(body)["credential"])
        bearer = {"Authorization": f"Bearer {api_key}"}
        status, body = await asyncio.to_thread(http_call, "GET", url + "/api/me", None, bearer)
        if status != 200:
            raise RuntimeError(f"/api/me answered {status}: {body[:300]!r}")
        await self.measure("GET /api/me", "get.lua", "/api/me", f.me, {"WRK_BEARER": api_key})

        log("(d) unknown claim tokens, nearly empty database")
        await self.check_complete_unknown()
        f.registrations_before = await self.events.registrations()
        await self.events.checkpoint()
        await self.measure(
            "complete, unknown token", "complete_unknown.lua", "/", f.complete_before
        )

        log("(b) registrations: POST /agent/auth")
        await self.registrations()

        log(f"filling the log to {plan.registrations:,} registrations")
        f.registrations_after = await self.fill_to(plan.registrations)
        await asyncio.sleep(SETTLE_SECONDS)
        self.remember_memory(f"after {f.registrations_after:,} registrations")

        log(f"(d) unknown claim tokens, {f.registrations_after:,} registrations")
        await self.events.checkpoint()
        await self.measure("complete, unknown token", "complete_unknown.lua", "/", f.complete_after)

        log(f"{plan.more:,} registrations more")
        f.registrations_more = await self.fill_to(f.registrations_after + plan.more)
        await asyncio.sleep(SETTLE_SECONDS)
        self.remember_memory(f"after {f.registrations_more:,} registrations")
        return f

    async def check_complete_unknown(self) -> None:
        body = b'{"claim_token":"clm_nobodyholdsthistoken0000","otp":"123456"}'
        status, answer = await asyncio.to_thread(
            http_call,
            "POST",
            self.server.url + "/agent/auth/claim/complete",
            body,
            {"Content-Type": "application/json"},
        )
        if status != 401:
            raise RuntimeError(f"complete with an unknown token answered {status}: {answer!r}")


# -- the report ----------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _cells(values: Sequence[str]) -> str:
    return "| " + " | ".join(values) + " |"


def _rate_row(label: str, runs: dict[int, WrkRun]) -> str:
    return _cells([label, *(f"{runs[c].rate:,.0f}" for c in CONNECTIONS)])


def _ratio_row(label: str, top: dict[int, WrkRun], bottom: dict[int, WrkRun]) -> str:
    return _cells([label, *(f"{_ratio(top[c].rate, bottom[c].rate):.2f}x" for c in CONNECTIONS)])


def _latency_row(label: str, runs: dict[int, WrkRun]) -> str:
    return _cells([label, *(f"{runs[c].p50_ms:.1f} / {runs[c].p99_ms:.1f}" for c in CONNECTIONS)])


def _count_row(label: str, runs: dict[int, WrkRun]) -> str:
    return _cells([label, *(f"{runs[c].non_2xx} / {runs[c].errors}" for c in CONNECTIONS)])


def _cpu_row(label: str, runs: dict[int, WrkRun]) -> str:
    cells = []
    for c in CONNECTIONS:
        cpu = runs[c].cpu
        if cpu is None:
            cells.append("")
            continue
        server, postgres, _ = cpu.per_request_ms(runs[c].requests)
        cells.append(f"{server:.3f} / {postgres:.3f}")
    return _cells([label, *cells])


def print_machine(plan: Plan, machine: list[tuple[str, str]]) -> None:
    print()
    print("machine")
    width = max(len(k) for k, _ in machine)
    for key, value in machine:
        print(f"  {key:<{width}}  {value}")
    print(
        f"server: authledger serve --workers {plan.workers}; client: wrk -t1 (one core at most) "
        f"on the same host: client, server and Postgres share the {os.cpu_count()} cores.\n"
        f"each run {plan.seconds:g} s after a {plan.warmup:g} s warm-up at "
        f"{max(CONNECTIONS)} connections; wrk --timeout {WRK_TIMEOUT}"
    )
    print()


def print_figures(f: Figures) -> None:
    before, after = f.registrations_before, f.registrations_after
    print(_cells(["measurement", *(f"c={c}" for c in CONNECTIONS)]))
    print("|---|---:|---:|")
    print(_rate_row("static GET /healthz, req/s", f.static))
    print(_latency_row("static p50 / p99, ms", f.static))
    print(_cpu_row("static CPU per request, server / Postgres, ms", f.static))
    print(_rate_row("registrations POST /agent/auth, req/s", f.register))
    print(_latency_row("registration p50 / p99, ms", f.register))
    print(_count_row("registration non-2xx / socket errors", f.register))
    print(_cpu_row("registration CPU per request, server / Postgres, ms", f.register))
    committed = (f.committed[c] for c in CONNECTIONS)
    print(
        _cells(
            [
                "registrations: 200s / of them in the log / more in the log (in flight at stop)",
                *(f"{c.ok} / {c.found} / {c.in_flight}" for c in committed),
            ]
        )
    )
    print(_ratio_row("**registration / static**", f.register, f.static))
    print(_rate_row("GET /api/me, req/s", f.me))
    print(_latency_row("/api/me p50 / p99, ms", f.me))
    print(_count_row("/api/me non-2xx / socket errors", f.me))
    print(_cpu_row("/api/me CPU per request, server / Postgres, ms", f.me))
    print(_ratio_row("**/api/me / static**", f.me, f.static))
    print(_rate_row(f"complete, unknown token, {before:,} registrations, req/s", f.complete_before))
    print(_rate_row(f"complete, unknown token, {after:,} registrations, req/s", f.complete_after))
    print(_latency_row(f"complete p50 / p99 ({before:,}), ms", f.complete_before))
    print(_latency_row(f"complete p50 / p99 ({after:,}), ms", f.complete_after))
    print(
        _cpu_row(f"complete CPU per request ({before:,}), server / Postgres, ms", f.complete_before)
    )
    print(
        _cpu_row(f"complete CPU per request ({after:,}), server / Postgres, ms", f.complete_after)
    )
    for label, runs in ((f"{before:,}", f.complete_before), (f"{after:,}", f.complete_after)):
        other = (str(runs[c].requests - runs[c].count(401)) for c in CONNECTIONS)
        print(_cells([f"complete ({label}): answers other than 401", *other]))
    print(_ratio_row("**complete-unknown after / before**", f.complete_after, f.complete_before))
    print()
    print(_cells(["connections per HTTP child, mid-run", *(f"c={c}" for c in CONNECTIONS)]))
    print("|---|---:|---:|")
    for label, runs in (
        ("static", f.static),
        ("registration", f.register),
        ("/api/me", f.me),
        (f"complete ({before:,})", f.complete_before),
        (f"complete ({after:,})", f.complete_after),
    ):
        print(_cells([label, *(" + ".join(map(str, runs[c].split)) for c in CONNECTIONS)]))
    print()
    print("| resident memory of the server processes | RSS MB | PSS MB |")
    print("|---|---:|---:|")
    for label, memory in f.memory:
        print(f"| {label} | {memory.rss_mb:.1f} | {memory.pss_mb:.1f} |")
    if f.fills:
        rates = ", ".join(
            f"{r.requests:,} at {r.rate:,.0f}/s (p99 {r.p99_ms:.0f} ms)" for r in f.fills
        )
        print(f"\nfill runs (wrk -t1 -c{FILL_CONNECTIONS}): {rates}")
    for label, memory in f.memory:
        print(f"  {label}: {memory.line()}")


def _each(ratios: Sequence[float]) -> str:
    return ", ".join(f"c={c} {r:.2f}x" for c, r in zip(CONNECTIONS, ratios, strict=True))


def _server_ms(run: WrkRun) -> float:
    return run.cpu.per_request_ms(run.requests)[0] if run.cpu is not None else float("nan")


def print_targets(f: Figures) -> bool:
    """The issue's targets, met or not; whether every registration answered 200 is logged."""
    c_high = max(CONNECTIONS)
    before, after = f.registrations_before, f.registrations_after
    committed = all(f.committed[c].holds for c in CONNECTIONS)
    reg_each = [_ratio(f.register[c].rate, f.static[c].rate) for c in CONNECTIONS]
    me_each = [_ratio(f.me[c].rate, f.static[c].rate) for c in CONNECTIONS]
    complete_each = [
        _ratio(f.complete_after[c].rate, f.complete_before[c].rate) for c in CONNECTIONS
    ]
    reg, me, complete = min(reg_each), min(me_each), min(complete_each)
    p99 = f.register[c_high].p99_ms
    rss_after = f.memory[1][1].rss_mb if len(f.memory) > 1 else float("nan")
    rss_more = f.memory[2][1].rss_mb if len(f.memory) > 2 else float("nan")
    growth = _ratio(rss_more - rss_after, rss_after)
    rows = [
        (
            f"registrations/s >= {TARGET_REGISTRATION}x static, every event committed",
            f"{_each(reg_each)}; every 200 committed: {'yes' if committed else 'NO'}",
            reg >= TARGET_REGISTRATION and committed,
        ),
        (f"/api/me >= {TARGET_ME}x static", _each(me_each), me >= TARGET_ME),
        (
            f"p99 registration latency at {c_high} connections < {TARGET_P99_MS:g} ms",
            f"{p99:.1f} ms",
            p99 < TARGET_P99_MS,
        ),
        (
            f"complete-unknown, {after:,} registrations >= {TARGET_COMPLETE}x {before:,}",
            _each(complete_each),
            complete >= TARGET_COMPLETE,
        ),
        (
            f"RSS of all server processes after {after:,} registrations < {TARGET_RSS_MB:g} MB",
            f"{rss_after:.1f} MB",
            rss_after < TARGET_RSS_MB,
        ),
        (
            f"... flat after {f.registrations_more - after:,} more "
            f"(growth <= {FLAT_TOLERANCE:.0%})",
            f"{rss_more:.1f} MB ({growth:+.1%})",
            growth <= FLAT_TOLERANCE,
        ),
    ]
    print()
    print("| target (from the issue) | measured | |")
    print("|---|---|---|")
    for label, measured, ok in rows:
        print(_cells([label, measured, "met" if ok else "**not met**"]))
    lopsided = [
        f"{label} c={c} ({' + '.join(map(str, runs[c].split))})"
        for label, runs in (
            ("static", f.static),
            ("registration", f.register),
            ("/api/me", f.me),
            (f"complete ({before:,})", f.complete_before),
            (f"complete ({after:,})", f.complete_after),
        )
        for c in CONNECTIONS
        if runs[c].lopsided
    ]
    print(
        "\nruns where one HTTP process held 90 % or more of the connections: "
        + (", ".join(lopsided) if lopsided else "none")
    )
    cpu_ratios = []
    for label, runs in (("registration", f.register), ("/api/me", f.me)):
        each = [_ratio(_server_ms(f.static[c]), _server_ms(runs[c])) for c in CONNECTIONS]
        cpu_ratios.append(f"{label} {_each(each)}")
    print(
        "static's server CPU per request over theirs (how the connections fell does not "
        "matter here): " + ", ".join(cpu_ratios)
    )
    print(
        "\nfor scale (from the issue): an in-memory Node implementation, wrk -t2 -c16: "
        "~1,840 registrations/s, ~3,140 authenticated calls/s; p99 701 ms at 64 connections; "
        "290 MB after 50k registrations"
    )
    return committed


# -- main ----------------------------------------------------------------------------------


def _raise_on_sigterm(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def server_env(database_url: str, suffix: str) -> dict[str, str]:
    """The server's environment: ours, plus its own database, NATS stream and secrets."""
    env = {
        **os.environ,
        "AUTHLEDGER_DATABASE_URL": database_url,
        "AUTHLEDGER_NATS_URL": NATS_URL,
        "AUTHLEDGER_NATS_STREAM": f"BENCH_HTTP_{suffix}",
        "AUTHLEDGER_NATS_SUBJECT_PREFIX": f"bench_http_{suffix}",
        "AUTHLEDGER_SECRET_KEY": secrets.token_urlsafe(48),
        "AUTHLEDGER_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "AUTHLEDGER_RATE_LIMITS": "off",
        "AUTHLEDGER_LOG_LEVEL": "warning",
        "AUTHLEDGER_LOG_FORMAT": "json",
    }
    env.pop("AUTHLEDGER_PUBLIC_URL", None)
    return env


async def migrate(env: Mapping[str, str]) -> None:
    log("authledger migrate")
    migrated = await asyncio.to_thread(
        subprocess.run,
        [authledger_command(), "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if migrated.returncode != 0:
        raise RuntimeError(f"authledger migrate failed: {migrated.stderr.strip()}")


async def run(admin_url: str, plan: Plan) -> int:
    started = time.monotonic()
    name = f"authledger_bench_http_{secrets.token_hex(6)}"
    url = with_database(admin_url, name)
    workdir = Path(tempfile.mkdtemp(prefix="authledger-bench-http-"))
    admin = await asyncpg.connect(admin_url)
    server: Server | None = None
    keep_workdir = True
    try:
        machine = await describe(admin)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            env = server_env(url, name[-12:])
            await migrate(env)
            server = Server(env, free_port(), workdir / "serve.log", plan.workers)
            log(f"authledger serve --workers {plan.workers} on {server.url}")
            server.start()
            await server.wait_ready()
            conn = await asyncpg.connect(url)
            try:
                bench = Bench(plan, Wrk(server, workdir), server, Log(conn))
                figures = await bench.run()
            finally:
                await conn.close()
            server.stop()
            problems = server.log_problems()
            machine.append(("load average at end", load_average()))
            machine.append(("other client sessions at end", str(await other_sessions(admin))))
            print_machine(plan, machine)
            print_figures(figures)
            committed = print_targets(figures)
            print(f"whole run: {time.monotonic() - started:.0f} s")
            print(
                f"server stopped with status {server.stop_status}; "
                f"{len(problems)} error lines in its log"
            )
            for line in problems[:10]:
                print("  " + line[:300])
            keep_workdir = bool(problems) or not committed
            return 0 if committed and not problems else 1
        finally:
            if server is not None:
                server.stop()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            log(f"dropped database {name}")
    finally:
        await admin.close()
        if keep_workdir:
            log(f"kept the server's log and wrk's reports in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("AUTHLEDGER_BENCH_DATABASE_URL", DEFAULT_ADMIN_URL),
        help="admin URL of the server; the bench creates and drops its own database there "
        "(default: $AUTHLEDGER_BENCH_DATABASE_URL or %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="5 s per wrk run instead of 10, 1 s warm-ups"
    )
    parser.add_argument(
        "--registrations",
        type=int,
        default=50_000,
        help="registrations in the log for the second claim lookup and memory figure "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--more",
        type=int,
        default=20_000,
        help="registrations added after that, for the last memory figure (default %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=WORKERS, help="HTTP processes (default %(default)s)"
    )
    args = parser.parse_args(argv)
    if not 1_000 <= args.registrations <= 500_000 or not 0 <= args.more <= 500_000:
        parser.error("--registrations must be in [1000, 500000], --more in [0, 500000]")
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be in [1, 16]")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    plan = Plan(
        seconds=5.0 if args.quick else 10.0,
        warmup=1.0 if args.quick else 2.0,
        registrations=args.registrations,
        more=args.more,
        workers=args.workers,
    )
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        return asyncio.run(run(args.database_url, plan))
    except KeyboardInterrupt:
        log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

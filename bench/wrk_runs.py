"""wrk runs against the server under test: one run's figures (via bench/wrk/report.lua), with
the CPU the processes spent and how the connections fell on the HTTP processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from process_use import CpuUse, connections_by_process, cpu_between, cpu_sample
from served import Server

WRK_DIR = Path(__file__).resolve().parent / "wrk"

WRK_TIMEOUT = "5s"  # a request slower than this counts as a wrk timeout error

SETTLE_SECONDS = 1.0  # after a run: requests wrk left in flight finish before we count


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

"""(i) of bench/write_path.py: v0.6 onboarding (docs/design/v06-dialect.md §10.3).

bench/wrk/onboard_v06.lua, per connection: V1 anonymous at POST /agent/identity, then V6 at
POST /oauth2/token with the answer's identity assertion; a completed pair is one agent
onboarded. At 16 and 64 connections, after a warm-up. Every V1 answered 200 must have its
`registration.created` in the log and every V6 answered 200 its `credential.issued`, each by
the answer's request id, and each credential must belong to a registration of the run (a
pair, not two strays). Reported as agents per second and CPU per agent (HTTP processes, the
worker, Postgres), beside v1's anonymous registrations per second of the same run: one v1
registration onboards one agent.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from console import log
from process_use import cpu_of
from scratch_database import BenchLog
from served import Server
from wrk_runs import SETTLE_SECONDS, Wrk, WrkRun

SCRIPT = "onboard_v06.lua"
PATH = "/agent/identity"


class PairLog(BenchLog):
    """The v0.6 onboardings recorded after a position, keyed by request id."""

    async def registrations_after(self, position: int) -> dict[str, str]:
        """request id -> registration id of the v0.6 registrations recorded."""
        rows = await self.conn.fetch(
            "SELECT metadata->>'correlation_id' AS id, stream_id FROM events "
            "WHERE type = 'registration.created' AND payload->>'dialect' = 'v06' "
            "AND position > $1",
            position,
        )
        return {str(r["id"]): str(r["stream_id"]) for r in rows}

    async def credentials_after(self, position: int) -> dict[str, str]:
        """request id -> the registration of each access token issued."""
        rows = await self.conn.fetch(
            "SELECT metadata->>'correlation_id' AS id, payload->>'registration_id' AS reg "
            "FROM events WHERE type = 'credential.issued' AND position > $1",
            position,
        )
        return {str(r["id"]): str(r["reg"]) for r in rows}


@dataclass(frozen=True)
class Pairs:
    """Whether every 200 of the run is in the log, as a pair."""

    identities: int  # V1 answered 200 (distinct request ids)
    tokens: int  # V6 answered 200 = agents onboarded
    identities_found: int  # of those, registrations in the log with that request id
    tokens_found: int  # of those, credentials in the log with that request id
    paired: int  # of the credentials found, those of a registration made in the run
    connections: int

    @property
    def holds(self) -> bool:
        return (
            self.identities_found == self.identities
            and self.tokens_found == self.paired == self.tokens
            and 0 <= self.identities - self.tokens <= self.connections  # last V1s unexchanged
        )

    def line(self) -> str:
        verdict = "yes" if self.holds else "NO"
        return (
            f"{self.identities} V1 and {self.tokens} V6 answered 200; in the log "
            f"{self.identities_found} registrations and {self.tokens_found} credentials by "
            f"request id, {self.paired} of them paired with a registration of the run; "
            f"every pair committed: {verdict}"
        )


@dataclass
class OnboardingFigures:
    runs: dict[int, WrkRun] = field(default_factory=dict)
    pairs: dict[int, Pairs] = field(default_factory=dict)
    worker_ms: dict[int, float] = field(default_factory=dict)  # worker CPU per agent

    def agents_per_second(self, c: int) -> float:
        run = self.runs[c]
        return self.pairs[c].tokens / run.seconds if run.seconds > 0 else 0.0

    def cpu_per_agent(self, c: int) -> tuple[float, float, float]:
        """HTTP processes, worker, Postgres: ms of CPU per agent onboarded."""
        run, agents = self.runs[c], self.pairs[c].tokens
        if run.cpu is None or agents <= 0:
            return (math.nan,) * 3
        http, pg, _ = run.cpu.per_request_ms(agents)
        return http, self.worker_ms[c], pg


class OnboardV06:
    def __init__(
        self,
        server: Server,
        worker_pid: int,
        wrk: Wrk,
        log_: PairLog,
        seconds: float,
        *,
        spy: Callable[[str], list[subprocess.Popen[bytes]]] | None = None,
    ) -> None:
        self.server, self.worker_pid, self.wrk = server, worker_pid, wrk
        self.events, self.seconds = log_, seconds
        self.spy = spy  # py-spy on the HTTP children and the worker, for the c=16 run
        self.figures = OnboardingFigures()

    async def measure(self, connections: tuple[int, ...] = (16, 64)) -> OnboardingFigures:
        await self.wrk.run("warm-up", SCRIPT, PATH, connections=64, seconds=2)
        for c in connections:
            await self.run(c)
        return self.figures

    async def run(self, c: int) -> None:
        await asyncio.sleep(SETTLE_SECONDS)
        await self.events.checkpoint()
        head = await self.events.head()
        worker_before = cpu_of(self.worker_pid) or 0.0
        pairs_file = self.wrk.workdir / f"onboard-c{c}.pairs"
        spies = self.spy("onboard-c16") if self.spy is not None and c == 16 else []
        run = await self.wrk.run(
            "v0.6 onboarding",
            SCRIPT,
            PATH,
            connections=c,
            seconds=self.seconds,
            env={"WRK_PAIRS": str(pairs_file), "WRK_FAILURE": str(pairs_file) + ".failure"},
        )
        spent = (cpu_of(self.worker_pid) or 0.0) - worker_before
        for spy in spies:
            await asyncio.to_thread(spy.wait, 60)
        await asyncio.sleep(SETTLE_SECONDS)
        identity_ids, token_ids = read_pairs(pairs_file)
        registrations = await self.events.registrations_after(head)
        credentials = await self.events.credentials_after(head)
        made = set(registrations.values())
        found = [credentials[i] for i in token_ids if i in credentials]
        pairs = Pairs(
            identities=len(identity_ids),
            tokens=len(token_ids),
            identities_found=len(identity_ids & registrations.keys()),
            tokens_found=len(found),
            paired=sum(1 for reg in found if reg in made),
            connections=c,
        )
        self.figures.runs[c], self.figures.pairs[c] = run, pairs
        self.figures.worker_ms[c] = spent / max(pairs.tokens, 1) * 1000
        log(run.line())
        log(f"  {self.figures.agents_per_second(c):,.0f} agents/s; " + pairs.line())
        failure = first_failure(pairs_file)
        if failure:
            log(f"  first answer other than 200: {failure[:300]}")


def read_pairs(path: Path) -> tuple[set[str], set[str]]:
    """The request ids of the V1 and of the V6 answers 200 (bench/wrk/onboard_v06.lua)."""
    identities: set[str] = set()
    tokens: set[str] = set()
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        kind, _, request_id = line.partition(" ")
        (identities if kind == "identity" else tokens).add(request_id)
    return identities, tokens


def first_failure(pairs_file: Path) -> str:
    """What the script kept of the first answer other than 200, if there was one."""
    path = Path(str(pairs_file) + ".failure")
    return path.read_text() if path.exists() else ""


def report_only(
    static: dict[int, WrkRun],
    v1: dict[int, WrkRun],
    v1_worker_ms: dict[int, float],
    v1_committed: bool,
    f: OnboardingFigures,
) -> bool:
    """write_path.py --only-onboarding: the baseline and v1's registrations as measured, then
    the v0.6 table."""
    for label, runs in (("static", static), ("v1 anonymous registration", v1)):
        for c, r in runs.items():
            print(f"{label} c={c}: {r.rate:,.0f} req/s, p99 {r.p99_ms:.2f} ms")
    print(f"  every v1 registration committed: {'yes' if v1_committed else 'NO'}")
    return report_onboarding(f, v1, v1_worker_ms, static[16]) and v1_committed


def report_onboarding(
    f: OnboardingFigures, v1: dict[int, WrkRun], v1_worker_ms: dict[int, float], static: WrkRun
) -> bool:
    """The table beside v1's registrations (one registration, one agent), and whether every
    pair was committed."""
    print("\n| onboarding | connections | agents/s | x v1 | p99 ms | CPU ms/agent: HTTP, "
          "worker, Postgres |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|")
    for c, run in f.runs.items():
        rate = f.agents_per_second(c)
        mine = v1.get(c)
        ratio = f"{rate / mine.rate:.2f}" if mine is not None and mine.rate else "?"
        http, worker, pg = f.cpu_per_agent(c)
        print(
            f"| v0.6 anonymous + token | {c} | {rate:,.0f} | {ratio} | {run.p99_ms:.2f} "
            f"| {http:.3f}, {worker:.3f}, {pg:.3f} |"
        )
        if mine is not None:
            http, pg, _ = mine.cpu.per_request_ms(mine.requests) if mine.cpu else (math.nan,) * 3
            worker = v1_worker_ms.get(c, math.nan)
            print(f"| v1 anonymous registration | {c} | {mine.rate:,.0f} | 1.00 | "
                  f"{mine.p99_ms:.2f} | {http:.3f}, {worker:.3f}, {pg:.3f} |")  # fmt: skip
    print(f"  (static at c=16: {static.rate:,.0f} req/s)")
    for c in f.runs:
        if c in v1 and v1[c].rate:
            per_v1 = f.agents_per_second(c) / v1[c].rate
            print(
                f"  {'met ' if per_v1 >= 1 else 'MISS'}  issue 14's aim, v0.6 agents/s >= v1 "
                f"registrations/s at c={c}: {per_v1:.2f}x (a documented ratio is accepted, "
                "design open question 10)"
            )
    committed = all(p.holds for p in f.pairs.values())
    print(f"  every v0.6 pair committed: {'yes' if committed else 'NO'}")
    return committed

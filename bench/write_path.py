"""The write path as deployed: `serve --workers 2` plus `worker`, measured with wrk.

    .venv/bin/python bench/write_path.py [--seconds S] [--threads T] [--database-url URL]
                                         [--profile DIR] [--floor] [--memory]
                                         [--identity | --only-id-jag] [--as-superuser]

Creates a fresh database (default postgresql://postgres@127.0.0.1:5432/postgres, or
AUTHLEDGER_BENCH_DATABASE_URL), migrates it, and starts `authledger serve --workers 2` and
`authledger worker` on it, both connecting as a login member of the runtime role (as production
does; --as-superuser: as the admin URL's user, whose writes the guards skip): NATS at
127.0.0.1:4222 with a stream of its own, an SMTP sink for the mailer, rate limits off, and the
default log settings (info, one JSON access line per request, kept in a file). Then, with `wrk
-t2` (--threads) on loopback, each run --seconds (10) after a warm-up:

a. the static endpoint, GET /.well-known/oauth-protected-resource, at 16 and 64 connections:
   the baseline every figure is divided by;
b. anonymous registrations (api_key), POST /agent/auth, at 1, 16 and 64 connections; every
   200 answer's registration must be in the log (by its request id);
c. the relay: how long after the last registration until every event of the log is on
   JetStream (the stream's message count equal to the head);
d. GET /api/me with one API key, at 16 connections.

Prints each run, the CPU per registration of the HTTP processes, the worker and Postgres,
the resident memory of every process, and the issue's targets.

e. verified-email registrations (identity_assertion, verified_email, an address of its own
   per request: a data subject and a claim mail in the outbox, in the append's transaction),
   at 16 and 64 connections; every 200 in the log, and a mail in the outbox for each.
h. ID-JAG registrations of returning users (ES256, a test provider's JWKS over HTTP on
   127.0.0.1; bench/returning_agents.py), at 16 and 64 connections; every 200 in the log.
i. v0.6 onboarding (bench/onboard_v06.py): per connection V1 anonymous at /agent/identity,
   then its assertion exchanged at /oauth2/token; a completed pair is one agent; at 16 and
   64 connections, as agents per second and CPU per agent beside (b)'s registrations; every
   pair's two events in the log by request id. Both doors are open on the stack.

With --only-onboarding, only (a), (b) at 16 and 64 connections and (i) run: the v0.6
figures beside v1's, nothing else. With --identity, only (a), (b) at 16 and 64 connections,
(e) and (h). With --only-id-jag, only (a), (h) and the relay (bench/floor_pairs.py).

With --memory, (g): registrations at c=16 until the log holds 50,000, then 200,000, and the
memory (RSS and PSS) of every process at each mark. The target is read on PSS: the HTTP
children are forked from a parent that imported the service, so their module pages are shared
and RSS would count them once per process.

With --floor, then (f): the same registrations and relay check against bench/floor_server.py
(the floor's unavoidable work behind the smallest HTTP server, same database, same worker),
each figure beside ours and beside the static endpoint measured in (a). With --profile DIR, py-spy
records each HTTP child and the worker during the 16-connection runs of (a), (b), (d), (e),
(h) and (i) into DIR (collapsed stacks, one file per process and run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import nats
from console import log
from id_jag import EventLog
from machine import load_average, other_sessions
from onboard_v06 import OnboardingFigures, OnboardV06, PairLog, report_onboarding, report_only
from process_use import Memory, cpu_of, memory_of
from registrations import REGISTER_BODY, Committed, Log
from returning_agents import LOOPBACK_PROVIDER_ENV, ReturningAgents, ReturningFigures
from scratch_database import add_database_url, with_database
from served import NATS_URL, Server, authledger_command, free_port, http_call, migrate
from smtp_sink import SmtpSink
from wrk_runs import SETTLE_SECONDS, Wrk, WrkRun

from migrations.roles import RUNTIME_ROLE
from service.runtime.database_role import url_as

STATIC = "/.well-known/oauth-protected-resource"
RELAY_TIMEOUT = 60.0
MAIL_DRAIN_SECONDS = 180.0  # after (e), for the worker to send every claim mail
TARGET_REGISTRATION = 0.3  # anonymous registrations/s at c=16, against static at c=16
TARGET_ME = 0.9
BENCH_ROLE = "authledger_bench_runtime"  # a login member of the runtime role
MEMORY_MARKS = (50_000, 200_000)  # --memory: registrations in the log when memory is read
TARGET_MEMORY_MB = 200.0  # every process of serve --workers 2 plus worker, PSS, at 50,000
TARGET_MEMORY_GROWTH_MB = 5.0  # from 50,000 to 200,000 registrations
TARGET_EMAIL = 0.2  # verified-email registrations/s at c=16, against static at c=16
TARGET_P99_MS = 100.0  # registrations at c=64
TARGET_ID_JAG = 0.15  # ID-JAG registrations (ES256, a returning user)/s at c=16


@dataclass
class Stack:
    """What runs: the HTTP server, the worker, their environment."""

    server: Server
    worker: subprocess.Popen[bytes]
    env: dict[str, str]


@dataclass
class Figures:
    static: dict[int, WrkRun] = field(default_factory=dict)
    register: dict[int, WrkRun] = field(default_factory=dict)
    committed: dict[int, Committed] = field(default_factory=dict)
    worker_ms: dict[int, float] = field(default_factory=dict)  # worker CPU per registration
    per_batch: dict[int, float] = field(default_factory=dict)  # registrations per commit
    me: WrkRun | None = None
    email: dict[int, WrkRun] = field(default_factory=dict)  # verified-email registrations
    email_committed: dict[int, Committed] = field(default_factory=dict)
    # registrations in the log -> (serve's processes, the worker's), with --memory
    memory_marks: dict[int, tuple[Memory, Memory]] = field(default_factory=dict)
    mails: int = 0  # claim mails in the outbox at the end: one per verified-email registration
    relay_lag_s: float = float("nan")
    published: bool = False
    memory: str = ""
    returning: ReturningFigures | None = None  # (h) ID-JAG registrations of returning users
    onboarding: OnboardingFigures | None = None  # (i) v0.6 anonymous + token exchange


class Bench:
    def __init__(self, stack: Stack, wrk: Wrk, events: Log, seconds: float) -> None:
        self.stack, self.wrk, self.events, self.seconds = stack, wrk, events, seconds
        self.profile: Path | None = None
        self.native = False
        self.figures = Figures()

    async def measure(self, *, quick: bool = False) -> None:
        log("(a) static")
        await self.static()
        log("(b) anonymous registrations")
        await self.registrations()
        log("(c) the relay")
        await self.relay()
        if quick:
            self.note_memory()
            return
        log("(d) /api/me")
        await self.me()
        log("(e) verified-email registrations")
        await self.email_registrations()
        await self.returning()
        await self.onboarding()
        self.note_memory()

    async def returning(self) -> None:
        log("(h) ID-JAG registrations of returning users (ES256)")
        self.figures.returning = await ReturningAgents(
            self.stack.server,
            self.wrk.workdir,
            EventLog(self.events.conn),
            self.stack.env["AUTHLEDGER_ADMIN_TOKEN"],
            self.seconds,
            spy=self._spy if self.profile is not None else None,
        ).measure()

    async def onboarding(self) -> None:
        log("(i) v0.6 onboarding: anonymous at /agent/identity + the token exchange")
        self.figures.onboarding = await OnboardV06(
            self.stack.server, self.stack.worker.pid, self.wrk, PairLog(self.events.conn),
            self.seconds, spy=self._spy if self.profile is not None else None,
        ).measure()  # fmt: skip

    async def baselines(self) -> None:
        """(a), and (b) at 16 and 64 connections: what a partial run is read beside."""
        log("(a) static")
        await self.static()
        log("(b) anonymous registrations")
        await self.registrations(connections=(16, 64))

    async def measure_onboarding(self) -> None:
        """--only-onboarding: the baselines and (i), nothing else."""
        await self.baselines()
        await self.onboarding()

    async def measure_identity(self) -> None:
        """--identity: the baselines, (e), (h), then the relay (c) over all of them."""
        await self.baselines()
        log("(e) verified-email registrations")
        await self.email_registrations()
        await self.returning()
        log("(c) the relay")
        await self.relay()
        self.note_memory()

    async def measure_id_jag(self) -> None:
        """--only-id-jag: (a), (h), then the relay (c) over them: what bench/floor_pairs.py
        sets beside identity_floor.py --kind id_jag."""
        log("(a) static")
        await self.static()
        await self.returning()
        log("(c) the relay")
        await self.relay()
        self.note_memory()

    async def static(self) -> None:
        await self.wrk.run("warm-up", "get.lua", STATIC, connections=64, seconds=2)
        for c in (16, 64):
            spies = self._spy("static-c16") if self.profile is not None and c == 16 else []
            run = await self.wrk.run(
                f"GET {STATIC}", "get.lua", STATIC, connections=c, seconds=self.seconds
            )
            for spy in spies:
                await asyncio.to_thread(spy.wait, 60)
            self.figures.static[c] = run
            log(run.line())

    async def registrations(self, connections: tuple[int, ...] = (1, 16, 64)) -> None:
        await self.wrk.run("warm-up", "register.lua", "/agent/auth", connections=64, seconds=2)
        for c in connections:
            run, committed = await self.run_registrations(
                "register.lua", c, profile="c16" if c == 16 else None
            )
            self.figures.register[c], self.figures.committed[c] = run, committed

    async def email_registrations(self) -> None:
        """E4 verified_email: a registration, a data subject and a claim mail per request.
        After each run, the mails it left queued (the worker's mailer sends beside the
        writers; bench/identity_floor.py prints the same line for the floor), then a wait
        until every one is sent, so that the next run starts on an empty outbox."""
        for c in (16, 64):
            run, committed = await self.run_registrations(
                "register_email.lua", c, profile="email-c16" if c == 16 else None
            )
            self.figures.email[c], self.figures.email_committed[c] = run, committed
            left = await self.events.conn.fetchval(
                "SELECT count(*) FROM mail_outbox WHERE status = 'pending'"
            )
            log(f"  {left:,} of {committed.new_events:,} claim mails still queued at the run's end")
            drain = await self.mails_sent()
            if drain is not None:  # the floor's line (bench/identity_floor.py) says the same
                whole = committed.new_events / (run.seconds + drain)
                log(
                    f"  with their mails sent: {whole:,.0f} registrations/s (the run and its drain)"
                )
        mails = await self.events.conn.fetchval("SELECT count(*) FROM mail_outbox")
        self.figures.mails = int(mails)

    async def mails_sent(self) -> float | None:
        """Wait (at most MAIL_DRAIN_SECONDS) until the worker has sent every claim mail, so
        that its sending does not share the machine with the next workload's runs (in
        session 8's runs it sent about 8,000 of (e)'s mails during (h)); the seconds that
        took, None when some were still pending."""
        started = time.monotonic()
        pending = "SELECT count(*) FROM mail_outbox WHERE status = 'pending'"
        while (left := int(await self.events.conn.fetchval(pending))) > 0:
            if time.monotonic() - started > MAIL_DRAIN_SECONDS:
                log(f"  {left:,} claim mails still pending after {MAIL_DRAIN_SECONDS} s")
                return None
            await asyncio.sleep(0.5)
        drained = time.monotonic() - started
        log(f"  every claim mail sent, {drained:.1f} s after the last run")
        return drained

    async def memory_growth(self) -> None:
        """Registrations at c=16 until the log holds each mark; every process's memory then."""
        for mark in MEMORY_MARKS:
            while (count := await self.events.registrations()) < mark:
                await self.wrk.run(
                    f"POST /agent/auth until {mark:,}",
                    "register.lua",
                    "/agent/auth",
                    connections=16,
                    seconds=30,
                    max_requests=(mark - count) // self.wrk.threads + 1,
                )
            await asyncio.sleep(SETTLE_SECONDS)
            serve, worker = memory_of(self.stack.server.pid), memory_of(self.stack.worker.pid)
            self.figures.memory_marks[count] = (serve, worker)
            log(
                f"{count:,} registrations: RSS {serve.rss_mb + worker.rss_mb:.1f} MB, "
                f"PSS {serve.pss_mb + worker.pss_mb:.1f} MB in all"
            )

    async def run_registrations(
        self, script: str, c: int, *, profile: str | None = None
    ) -> tuple[WrkRun, Committed]:
        worker = self.stack.worker.pid
        await asyncio.sleep(SETTLE_SECONDS)
        await self.events.checkpoint()
        head, before = await self.events.head(), await self.events.registrations()
        worker_before = cpu_of(worker) or 0.0
        spies = self._spy(profile) if profile else []
        run = await self.wrk.run(
            "POST /agent/auth",
            script,
            "/agent/auth",
            connections=c,
            seconds=self.seconds,
            collect_ids=True,
            env={"WRK_EMAIL_RUN": secrets.token_hex(4)},
        )
        for spy in spies:
            await asyncio.to_thread(spy.wait, 60)
        spent = (cpu_of(worker) or 0.0) - worker_before
        worker_ms = spent / max(run.requests, 1) * 1000
        if script == "register.lua":
            self.figures.worker_ms[c] = worker_ms
        await asyncio.sleep(SETTLE_SECONDS)
        recorded = set(await self.events.registration_ids_after(head))
        per_batch = await self.events.registrations_per_batch(head)
        if script == "register.lua":
            self.figures.per_batch[c] = per_batch
        ok_ids = set(run.ok_ids)
        committed = Committed(
            ok=run.count(200),
            ids=len(ok_ids),
            found=len(ok_ids & recorded),
            new_events=await self.events.registrations() - before,
            connections=c,
        )
        log(run.line())
        log(f"  worker CPU {worker_ms:.3f} ms per registration; {per_batch:.1f} a batch")
        log("  " + committed.line())
        return run, committed

    def _spy(self, name: str) -> list[subprocess.Popen[bytes]]:
        if self.profile is None:
            return []
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        pids = [*self.stack.server.http_children(), self.stack.worker.pid]
        argv = ["record", "-d", str(int(self.seconds)), "-r", "200", "--format", "raw"]
        if self.native:
            argv.append("--native")
        return [
            subprocess.Popen(  # noqa: S603 - our own profiler on our own processes
                [spy, *argv, "-p", str(pid), "-o", str(self.profile / f"{name}-{pid}.txt")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid in pids
        ]

    def note_memory(self) -> None:
        serve, worker = memory_of(self.stack.server.pid), memory_of(self.stack.worker.pid)
        self.figures.memory = (
            f"\nmemory: serve {serve.line()}\n        worker {worker.line()}\n"
            f"        in all: {serve.rss_mb + worker.rss_mb:.0f} MB RSS"
        )

    async def relay(self) -> None:
        """How long after the last registration until every event is on JetStream."""
        ended = time.monotonic()
        head = await self.events.head()
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            messages = 0
            while time.monotonic() - ended < RELAY_TIMEOUT:
                messages = (
                    await js.stream_info(self.stack.env["AUTHLEDGER_NATS_STREAM"])
                ).state.messages
                if messages >= head:
                    self.figures.relay_lag_s = time.monotonic() - ended
                    self.figures.published = messages == head
                    break
                await asyncio.sleep(0.05)
            log(f"JetStream holds {messages:,} messages for {head:,} events")
        finally:
            await nc.close()

    async def me(self) -> None:
        status, body = await asyncio.to_thread(
            http_call,
            "POST",
            self.stack.server.url + "/agent/auth",
            REGISTER_BODY,
            {"Content-Type": "application/json"},
        )
        if status != 200:
            raise RuntimeError(f"registration answered {status}: {body[:300]!r}")
        bearer = {"WRK_BEARER": str(json.loads(body)["credential"])}
        await self.wrk.run("warm-up", "get.lua", "/api/me", connections=16, seconds=2, env=bearer)
        spies = self._spy("me-c16") if self.profile is not None else []
        self.figures.me = await self.wrk.run(
            "GET /api/me", "get.lua", "/api/me", connections=16, seconds=self.seconds, env=bearer
        )
        for spy in spies:
            await asyncio.to_thread(spy.wait, 60)
        log(self.figures.me.line())


class FloorServer(Server):
    """bench/floor_server.py in place of `authledger serve`, with as many processes."""

    def start(self) -> None:
        argv = [
            sys.executable,
            str(Path(__file__).resolve().parent / "floor_server.py"),
            "--database-url",
            self.env["AUTHLEDGER_DATABASE_URL"],
            "--port",
            str(self.port),
            "--processes",
            str(self.workers),
        ]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own command line
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )


def report_floor(ours: Figures, floor: Figures) -> bool:
    static = ours.static[16]
    print("\n| anonymous registration | connections | req/s | p99 ms | x static | ours / floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for c, r in floor.register.items():
        mine = ours.register[c]
        for label, run in (("authledger serve", mine), ("floor with HTTP", r)):
            print(
                f"| {label} | {c} | {run.rate:,.0f} | {run.p99_ms:.2f} "
                f"| {run.rate / static.rate:.3f}x | {mine.rate / r.rate:.2f} |"
            )
    print("\nCPU per registration (ms) of the floor: HTTP processes; worker; Postgres; wrk")
    for c, r in floor.register.items():
        if r.cpu is not None:
            http, pg, wrk = r.cpu.per_request_ms(r.requests)
            print(
                f"  c={c}: HTTP {http:.3f}, worker {floor.worker_ms[c]:.3f}, Postgres {pg:.3f}, "
                f"wrk {wrk:.3f}; machine {r.cpu.machine_busy:.0%} busy; "
                f"{floor.per_batch.get(c, 0.0):.1f} registrations a batch"
            )
    committed = all(c.holds for c in floor.committed.values())
    print(
        f"  floor: every 200 committed: {'yes' if committed else 'NO'}; on JetStream within "
        f"{floor.relay_lag_s:.2f} s"
    )
    return committed and floor.published


def report_memory(f: Figures, target: Callable[[str, str, bool], None]) -> None:
    """(g), when run: the memory table and its two targets."""
    if len(f.memory_marks) == len(MEMORY_MARKS):
        print(
            "\n| registrations in the log | RSS in all, MB | PSS in all, MB | per process (RSS) |"
        )
        print("|---:|---:|---:|---|")
        totals = []
        for count, (serve, worker) in f.memory_marks.items():
            each = ", ".join(f"{n} {mb:.0f}" for _, n, mb in (*serve.processes, *worker.processes))
            pss = serve.pss_mb + worker.pss_mb
            totals.append(pss)
            print(f"| {count:,} | {serve.rss_mb + worker.rss_mb:.1f} | {pss:.1f} | {each} |")
        target(
            f"memory after {MEMORY_MARKS[0]:,} registrations <= 200 MB (PSS, every process)",
            f"{totals[0]:.1f} MB",
            totals[0] <= TARGET_MEMORY_MB,
        )
        target(
            f"memory growth to {MEMORY_MARKS[1]:,} registrations <= 5 MB",
            f"{totals[1] - totals[0]:+.1f} MB",
            totals[1] - totals[0] <= TARGET_MEMORY_GROWTH_MB,
        )


def report(f: Figures) -> bool:
    static = f.static[16]
    verdicts: list[bool] = []

    def target(label: str, value: str, met: bool) -> None:
        verdicts.append(met)
        print(f"  {'met ' if met else 'MISS'}  {label}: {value}")

    print("\n| workload | connections | req/s | p50 ms | p99 ms | x static (c=16) |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [("static", r) for r in f.static.values()]
    rows += [("anonymous registration", r) for r in f.register.values()]
    rows += [("GET /api/me", f.me)] if f.me is not None else []
    rows += [("verified-email registration", r) for r in f.email.values()]
    if f.returning is not None:
        rows += [("ID-JAG registration, returning user", r) for r in f.returning.runs.values()]
    for label, r in rows:
        print(
            f"| {label} | {r.connections} | {r.rate:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.rate / static.rate:.3f}x |"
        )
    print(
        "\nCPU per registration (ms): HTTP = serve (supervisor and children); worker; Postgres; wrk"
    )
    for c, r in f.register.items():
        if r.cpu is not None:
            http, pg, wrk = r.cpu.per_request_ms(r.requests)
            print(
                f"  c={c}: HTTP {http:.3f}, worker {f.worker_ms[c]:.3f}, Postgres {pg:.3f}, "
                f"wrk {wrk:.3f}; machine {r.cpu.machine_busy:.0%} busy; "
                f"{f.per_batch.get(c, 0.0):.1f} registrations a batch"
            )
    print(f.memory)
    print("\ntargets (issue 11):")
    if f.register:
        r16, r64 = f.register[16], f.register[64]
        target(
            "anonymous registrations at c=16 >= 0.3x static",
            f"{r16.rate / static.rate:.3f}x",
            r16.rate >= TARGET_REGISTRATION * static.rate,
        )
        target(
            "registration p99 at c=64 < 100 ms", f"{r64.p99_ms:.1f} ms", r64.p99_ms < TARGET_P99_MS
        )
    if f.me is not None:
        target(
            "GET /api/me >= 0.9x static",
            f"{f.me.rate / static.rate:.3f}x",
            f.me.rate >= TARGET_ME * static.rate,
        )
    target(
        "every event on JetStream within 1 s of the run's end",
        f"{f.relay_lag_s:.2f} s",
        f.published and f.relay_lag_s < 1.0,
    )
    if f.email:
        e16, e64 = f.email[16], f.email[64]
        target(
            "verified-email registrations at c=16 >= 0.2x static",
            f"{e16.rate / static.rate:.3f}x",
            e16.rate >= TARGET_EMAIL * static.rate,
        )
        target(
            "verified-email p99 at c=64 < 100 ms",
            f"{e64.p99_ms:.1f} ms",
            e64.p99_ms < TARGET_P99_MS,
        )
        emails = sum(c.new_events for c in f.email_committed.values())
        target(
            "a claim mail in the outbox for every verified-email registration",
            f"{f.mails:,} mails, {emails:,} registrations",
            f.mails == emails,
        )
    report_memory(f, target)
    returning_committed: list[Committed] = []
    if f.returning is not None and f.returning.runs:
        j16, j64 = f.returning.runs[16], f.returning.runs[64]
        target(
            "ID-JAG registrations (ES256, returning user) at c=16 >= 0.15x static",
            f"{j16.rate / static.rate:.3f}x",
            j16.rate >= TARGET_ID_JAG * static.rate,
        )
        target("ID-JAG p99 at c=64 < 100 ms", f"{j64.p99_ms:.1f} ms", j64.p99_ms < TARGET_P99_MS)
        returning_committed = list(f.returning.committed.values())
    committed = all(
        c.holds for c in (*f.committed.values(), *f.email_committed.values(), *returning_committed)
    )
    target("every 200 committed", "yes" if committed else "NO", committed)
    if f.onboarding is not None:
        paired = report_onboarding(f.onboarding, f.register, f.worker_ms, static)
        committed = committed and paired
    tokens_sufficed = f.returning is None or f.returning.exhausted == 0
    if not tokens_sufficed:
        print("  the ID-JAG runs ran out of tokens: their figures are void")
    return committed and f.published and tokens_sufficed


def report_onboarding_only(f: Figures) -> bool:
    """--only-onboarding's report: (a), (b) and (i)."""
    if f.onboarding is None:
        return False
    committed = all(c.holds for c in f.committed.values())
    return report_only(f.static, f.register, f.worker_ms, committed, f.onboarding)


def stack_env(url: str, suffix: str, smtp_port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "AUTHLEDGER_DATABASE_URL": url,
        "AUTHLEDGER_NATS_URL": NATS_URL,
        "AUTHLEDGER_NATS_STREAM": f"BENCH_WRITE_{suffix}",
        "AUTHLEDGER_NATS_SUBJECT_PREFIX": f"bench_write_{suffix}",
        "AUTHLEDGER_SECRET_KEY": secrets.token_urlsafe(48),
        "AUTHLEDGER_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "AUTHLEDGER_RATE_LIMITS": "off",
        "AUTHLEDGER_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?tls=none",
        **LOOPBACK_PROVIDER_ENV,  # (h): the test provider's keys, over http on 127.0.0.1
        "AUTHLEDGER_DOORS": "v1 v06",  # (i) onboards through the v0.6 door
    }
    for default in ("AUTHLEDGER_PUBLIC_URL", "AUTHLEDGER_LOG_LEVEL", "AUTHLEDGER_LOG_FORMAT"):
        env.pop(default, None)
    return env


async def runtime_login(admin: asyncpg.Connection, url: str) -> str:
    """`url` as a login member of the runtime role, as serve and worker connect in production.

    The role is the cluster's (made once, left in place, like the suite's roles); migrate,
    run as the admin URL's user, has made `authledger_runtime` and its grants. Its writes
    pay the guards' whole check (migrations/guards.sql), which the owner's skip.
    """
    with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        await admin.execute(f"CREATE ROLE {BENCH_ROLE} LOGIN")
    await admin.execute(f"ALTER ROLE {BENCH_ROLE} LOGIN NOSUPERUSER PASSWORD '{BENCH_ROLE}'")
    await admin.execute(f"GRANT {RUNTIME_ROLE} TO {BENCH_ROLE}")
    return url_as(url, BENCH_ROLE, BENCH_ROLE)


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own command line
            [authledger_command(), "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(30)
    if worker.poll() is None:
        worker.kill()
        worker.wait()


async def measure_floor(ours: Stack, workdir: Path, events: Log, args: argparse.Namespace) -> Bench:
    """bench/floor_server.py on the same database with the same worker: registrations, relay."""
    server = FloorServer(ours.env, free_port(), workdir / "floor.log", 2)
    server.start()
    try:
        await server.wait_ready()
        floor = Bench(
            Stack(server, ours.worker, ours.env),
            Wrk(server, workdir, args.threads),
            events,
            args.seconds,
        )
        await floor.registrations()
        await floor.relay()
    finally:
        server.stop()
    return floor


async def measure_all(bench: Bench, workdir: Path, args: argparse.Namespace) -> Bench | None:
    """(a)-(e), (h), (i), then (g) with --memory and (f) with --floor: the floor's Bench, if
    run. With --only-onboarding: (a), (b) and (i) only; with --identity: (a), (b), (e) and
    (h); with --only-id-jag: (a), (h) and (c); with --quick: (a)-(c) only."""
    if args.only_onboarding:
        await bench.measure_onboarding()
        return None
    if args.identity:
        await bench.measure_identity()
        return None
    if args.only_id_jag:
        await bench.measure_id_jag()
        return None
    await bench.measure(quick=args.quick)
    if args.memory:
        log("(g) memory after 50,000 and 200,000 registrations")
        await bench.memory_growth()
    if not args.floor:
        return None
    log("(f) the floor with its HTTP")
    bench.stack.server.stop()
    return await measure_floor(bench.stack, workdir, bench.events, args)


@dataclass
class Deployment:
    """A bench's own database on the server, an SMTP sink and `authledger worker` running
    against it: what `serve` is started beside."""

    name: str  # the database's
    url: str  # the database as the admin URL's user
    env: dict[str, str]  # serve's and the worker's environment (the runtime role's URL)
    workdir: Path  # the logs
    worker: subprocess.Popen[bytes]


@contextlib.asynccontextmanager
async def deployment(
    admin: asyncpg.Connection, admin_url: str, kind: str, *, as_superuser: bool = False
) -> AsyncIterator[Deployment]:
    """A fresh, migrated database with its SMTP sink and worker; on exit the worker stopped,
    the database dropped and its JetStream stream deleted."""
    name = f"authledger_bench_{kind}_{secrets.token_hex(6)}"
    url = with_database(admin_url, name)
    workdir = Path(tempfile.mkdtemp(prefix=f"authledger-bench-{kind}-"))
    smtp = SmtpSink()
    smtp.start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        env = stack_env(url, name[-12:], smtp.port)
        await migrate(env)
        if not as_superuser:
            env["AUTHLEDGER_DATABASE_URL"] = await runtime_login(admin, url)
        worker = start_worker(env, workdir / "worker.log")
        yield Deployment(name, url, env, workdir, worker)
    finally:
        if worker is not None:
            await asyncio.to_thread(stop_worker, worker)
        smtp.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await drop_stream(f"BENCH_WRITE_{name[-12:]}")


async def run(args: argparse.Namespace) -> int:
    admin = await asyncpg.connect(args.database_url)
    try:
        async with deployment(
            admin, args.database_url, "write", as_superuser=args.as_superuser
        ) as deployed:
            server = Server(deployed.env, free_port(), deployed.workdir / "serve.log", 2)
            server.start()
            try:
                return await measure_deployed(admin, deployed, server, args)
            finally:
                server.stop()
    finally:
        await admin.close()


async def measure_deployed(
    admin: asyncpg.Connection, deployed: Deployment, server: Server, args: argparse.Namespace
) -> int:
    await server.wait_ready()
    workdir = deployed.workdir
    conn = await asyncpg.connect(deployed.url)
    try:
        stack = Stack(server, deployed.worker, deployed.env)
        bench = Bench(stack, Wrk(server, workdir, args.threads), Log(conn), args.seconds)
        if args.profile is not None:
            bench.profile = args.profile
            bench.native = args.native
            await asyncio.to_thread(args.profile.mkdir, parents=True, exist_ok=True)
        floor = await measure_all(bench, workdir, args)
    finally:
        await conn.close()
    print(
        f"load average {load_average()}; other client sessions {await other_sessions(admin)}"
        f"; wrk -t{args.threads}, {args.seconds:g} s a run; logs in {workdir}"
    )
    ok = report_onboarding_only(bench.figures) if args.only_onboarding else report(bench.figures)
    if floor is not None:
        ok = report_floor(bench.figures, floor.figures) and ok
    return 0 if ok else 1


async def drop_stream(stream: str) -> None:
    """The run's JetStream stream goes with its database (the machine's NATS is shared)."""
    with contextlib.suppress(Exception):
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_database_url(parser)
    parser.add_argument("--seconds", type=float, default=10.0, help="each measured run")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output folder")
    parser.add_argument(
        "--native", action="store_true", help="with --profile: C and Rust frames too"
    )
    parser.add_argument(
        "--floor", action="store_true", help="then the same against bench/floor_server.py"
    )
    parser.add_argument(
        "--quick", action="store_true", help="(a)-(c) only: static, anonymous, the relay"
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="then register until the log holds 50,000 and 200,000 registrations, reading "
        "every process's memory at each (about 4 minutes more)",
    )
    parser.add_argument(
        "--only-onboarding",
        action="store_true",
        help="only the static baseline, v1's anonymous registrations at 16 and 64 connections "
        "and the v0.6 onboarding (i)",
    )
    parser.add_argument(
        "--identity",
        action="store_true",
        help="only the static baseline, anonymous registrations at 16 and 64 connections, and "
        "the verified-email (e) and ID-JAG (h) registrations",
    )
    parser.add_argument(
        "--only-id-jag",
        action="store_true",
        help="only the static baseline and the ID-JAG registrations (h), then the relay",
    )
    parser.add_argument(
        "--as-superuser",
        action="store_true",
        help="serve and worker connect as the admin URL's user (the guards then skip their "
        "check) instead of a member of the runtime role, as production does",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

"""ID-JAG registrations per second of `authledger serve --workers 2`, beside its static endpoint.

    .venv/bin/python bench/id_jag.py [--quick] [--database-url URL] [--workers N]

Creates a fresh database on the server behind the admin URL (default
postgresql://postgres@127.0.0.1:5432/postgres, or AUTHLEDGER_BENCH_DATABASE_URL), runs
`authledger migrate`, and starts `authledger serve --workers 2` on a free loopback port as
bench/http_load.py does (its own NATS stream, rate limits off, JSON logs at warning level into
a file), with AUTHLEDGER_JWKS_ALLOW_LOOPBACK_HTTP=true and AUTHLEDGER_OUTBOUND_ALLOW set to
loopback so that it may fetch a provider's JWKS over plain http on 127.0.0.1, and without
AUTHLEDGER_PUBLIC_URL, so that its issuer (the ID-JAGs' `aud`) is http://127.0.0.1:<port>.
Then, with `wrk -t1 -c32 --latency`, 10 s per run (5 s with --quick) after a 2 s warm-up (1 s):

a. GET /healthz, a static JSON answer of the same server: the baseline;
b. for ES256, then EdDSA: a test agent provider (tests/support/idp.py) in this script's own
   event loop, serving its JWKS over HTTP on 127.0.0.1 all through the run, is added to the
   trust list through the admin API (POST /admin/trusted-issuers). One ID-JAG is registered
   by hand as a check (a probe), then ID-JAGs are registered with POST /agent/auth
   (`identity_assertion`, `api_key`) by bench/wrk/id_jag.lua, which sends each token of a file
   once. The tokens are minted beforehand with real time, a lifetime of 300 s and a jti each;
   their subjects go round-robin over 1,000 per provider, so the first 1,000 registrations
   provision a user and a delegation and the rest use an existing delegation (most of the
   first 1,000 fall in the warm-up; the script counts how many fell in the measured run,
   from the events it recorded). It mints enough tokens for half the static rate
   (twice the target) over each run, between 5,000 and 150,000; should a run use them all, it
   stops sending and the bench fails;
c. for reference, anonymous registrations (POST /agent/auth, bench/wrk/register.lua).

For every run it reports requests/s, p50/p99 latency, the statuses (every answer should be a
200; the first other answer's body is shown), the ratio to the static rate, the CPU time per
request of the server's processes, Postgres and wrk (as bench/http_load.py does), how the
connections fell on the HTTP processes, and a check that every 200 answer's credential is in
the log (a `credential.issued` event with `issued_via` id_jag whose correlation id is the
answer's X-Request-ID). It counts the JWKS requests each provider received over the whole run:
each HTTP process has its own key cache, so the expected count is one per key per process that
served that provider's ID-JAGs. Prints the machine, the runs, a table of the figures and the
issue's target (ID-JAG registrations/s >= 0.25x static, for each algorithm). Exits non-zero if
any request failed (an answer other than 200, a socket error, an unlogged 200, tokens run out)
or the server logged errors; a missed target alone does not. Stops the server and drops the
database at the end, also on failure. Needs wrk, `ss` and Linux (/proc), like http_load.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from console import cells, log, ratio
from machine import print_lines
from scratch_database import BenchLog
from served import Server, http_call
from wrk_bench import arguments, check_arguments, run_seconds, run_to_end, served
from wrk_runs import SETTLE_SECONDS, WRK_TIMEOUT, Wrk, WrkRun

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.support.idp, when the project is not installed editable
    sys.path.insert(0, str(ROOT))

from tests.support.idp import IdentityProvider  # noqa: E402

CONNECTIONS = 32
ALGORITHMS = ("ES256", "EdDSA")
SUBJECTS = 1_000  # per provider, round-robin
TOKEN_LIFETIME = timedelta(seconds=300)
TARGET = 0.25  # ID-JAG registrations/s >= 0.25x static (the issue)
TOKEN_HEADROOM = 0.5  # mint for this fraction of the static rate: twice the target
MIN_TOKENS = 5_000
MAX_TOKENS = 150_000  # per run: bounded count (and the run is bounded in time by -d)
ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
ANONYMOUS_BODY = b'{"type":"anonymous","requested_credential_type":"api_key"}'
EXHAUSTED_STATUS = 404  # GET /bench/tokens-exhausted, sent by id_jag.lua once tokens run out


# -- the log -------------------------------------------------------------------------------


class EventLog(BenchLog):
    """Questions about the ID-JAG registrations in the bench database's event log."""

    async def types_after(self, position: int) -> dict[str, int]:
        rows = await self.conn.fetch(
            "SELECT type, count(*) AS n FROM events WHERE position > $1 GROUP BY type", position
        )
        return {str(r["type"]): int(r["n"]) for r in rows}

    async def delegations(self) -> int:
        """How many subjects have registered here (a delegation each)."""
        return int(await self.conn.fetchval("SELECT count(*) FROM delegations"))

    async def id_jag_credentials_after(self, position: int) -> list[str]:
        """The correlation (request) ids of the ID-JAG credentials recorded after `position`."""
        rows = await self.conn.fetch(
            "SELECT metadata->>'correlation_id' AS id FROM events "
            "WHERE type = 'credential.issued' AND payload->>'issued_via' = 'id_jag' "
            "AND position > $1",
            position,
        )
        return [str(r["id"]) for r in rows]


@dataclass(frozen=True)
class Logged:
    """Whether every ID-JAG registration answered 200 is in the log, and what it wrote."""

    ok: int  # 200 answers wrk saw
    ids: int  # distinct request ids among them
    found: int  # of those, ID-JAG credentials in the log with that request id
    recorded: int  # ID-JAG credentials recorded during the run (and its settling)
    sent: int  # tokens wrk sent
    connections: int
    types: dict[str, int]  # events recorded during the run, by type

    @property
    def in_flight(self) -> int:
        """Recorded but never seen by wrk: requests it left in flight when it stopped."""
        return self.recorded - self.found

    @property
    def holds(self) -> bool:
        return (
            self.ids == self.found == self.ok
            and 0 <= self.in_flight <= self.connections
            and self.recorded <= self.sent
        )

    def line(self) -> str:
        verdict = "yes" if self.holds else "NO"
        return (
            f"{self.ok} answered 200, {self.found} of them in the log; {self.recorded} ID-JAG "
            f"credential.issued recorded = {self.found} + {self.in_flight} in flight when wrk "
            f"stopped (at most {self.connections}); {self.sent} tokens sent; "
            f"every 200 committed: {verdict}"
        )

    @property
    def new_delegations(self) -> int:
        return self.types.get("delegation.created", 0)

    @property
    def on_existing(self) -> int:
        return self.types.get("delegation.used", 0) - self.new_delegations

    def provisioning(self) -> str:
        users = self.types.get("user.created", 0)
        return (
            f"{self.types.get('delegation.used', 0)} delegation.used: {self.new_delegations} "
            f"new delegations (with {users} new users), {self.on_existing} on an existing one"
        )

    def split(self) -> str:
        users = self.types.get("user.created", 0)
        return f"{self.new_delegations:,} ({users:,}) / {self.on_existing:,}"


# -- the runs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRun:
    """A wrk run of bench/wrk/id_jag.lua, with what the script adds to wrk's report."""

    run: WrkRun
    tokens: int  # in the file
    sent: int
    exhausted: int  # requests asked for once the tokens had run out
    failure: str | None  # the first answer other than 200: status and body

    @property
    def failed(self) -> int:
        """Requests that went wrong: answers other than 200, and socket errors."""
        return self.run.requests - self.run.count(200) + self.run.errors


@dataclass
class AlgFigures:
    alg: str
    issuer: str = ""
    tokens_minted: int = 0
    mint_seconds: float = 0.0
    warmup: TokenRun | None = None
    measured: TokenRun | None = None
    logged: Logged | None = None
    jwks: list[tuple[str, int]] = field(default_factory=list)  # (moment, requests so far)
    jwks_total: int = 0


@dataclass(frozen=True)
class Plan:
    seconds: float
    warmup: float
    workers: int


@dataclass
class Figures:
    static: WrkRun | None = None
    anonymous: WrkRun | None = None
    algs: list[AlgFigures] = field(default_factory=list)


def tokens_for(static_rate: float, seconds: float) -> int:
    wanted = math.ceil(static_rate * TOKEN_HEADROOM * seconds)
    return max(MIN_TOKENS, min(MAX_TOKENS, wanted))


def mint_tokens(idp: IdentityProvider, *, aud: str, first: int, count: int, path: Path) -> None:
    """`count` ID-JAGs, one a line, subjects round-robin over SUBJECTS from number `first`."""
    prefix = idp.signing_key.alg.lower()
    now = datetime.now(UTC)
    with path.open("w") as out:
        for i in range(first, first + count):
            token = idp.mint_id_jag(
                aud=aud, now=now, sub=f"{prefix}-agent-{i % SUBJECTS:04d}", lifetime=TOKEN_LIFETIME
            )
            out.write(token + "\n")


def registration_body(token: str) -> bytes:
    body = {
        "type": "identity_assertion",
        "assertion_type": ID_JAG,
        "assertion": token,
        "requested_credential_type": "api_key",
    }
    return json.dumps(body).encode()


class Bench:
    def __init__(
        self,
        *,
        plan: Plan,
        wrk: Wrk,
        server: Server,
        events: EventLog,
        workdir: Path,
        admin_token: str,
    ) -> None:
        self.plan, self.wrk, self.server, self.events = plan, wrk, server, events
        self.workdir, self.admin_token = workdir, admin_token
        self.figures = Figures()
        self.files = 0

    async def measure(self, name: str, script: str, path: str) -> WrkRun:
        await self.wrk.run(
            "warm-up", script, path, connections=CONNECTIONS, seconds=self.plan.warmup
        )
        run = await self.wrk.run(
            name, script, path, connections=CONNECTIONS, seconds=self.plan.seconds
        )
        log(run.line())
        return run

    async def token_run(
        self, name: str, tokens: Path, seconds: float, *, collect_ids: bool
    ) -> TokenRun:
        self.files += 1
        token_report = self.workdir / f"tokens-{self.files}.txt"
        failure = self.workdir / f"failure-{self.files}.txt"
        run = await self.wrk.run(
            name,
            "id_jag.lua",
            "/agent/auth",
            connections=CONNECTIONS,
            seconds=seconds,
            env={
                "WRK_TOKENS": str(tokens),
                "WRK_TOKEN_REPORT": str(token_report),
                "WRK_FAILURE": str(failure),
            },
            collect_ids=collect_ids,
        )
        sent, exhausted, loaded = (int(x) for x in token_report.read_text().split())
        sample = failure.read_text(errors="replace") if failure.exists() else None
        done = TokenRun(run, loaded, sent, exhausted, sample)
        log(run.line())
        if exhausted:
            log(f"  the {loaded:,} tokens ran out: {exhausted} requests not sent")
        if sample is not None:
            log(f"  first answer other than 200: {sample[:300]}")
        return done

    async def admin(self, path: str, body: Mapping[str, object]) -> tuple[int, bytes]:
        return await asyncio.to_thread(
            http_call,
            "POST",
            self.server.url + path,
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {self.admin_token}"},
        )

    async def id_jag(self, idp: IdentityProvider, static_rate: float) -> AlgFigures:
        alg = idp.signing_key.alg
        f = AlgFigures(alg=alg, issuer=idp.issuer)
        status, answer = await self.admin(
            "/admin/trusted-issuers",
            {"issuer": idp.issuer, "jwks_uri": idp.jwks_url, "algorithms": [alg]},
        )
        if status not in (200, 201):
            raise RuntimeError(f"trusting {idp.issuer} answered {status}: {answer[:300]!r}")
        aud = self.server.url  # the server's issuer: `serve` without AUTHLEDGER_PUBLIC_URL
        warmup_count = tokens_for(static_rate, self.plan.warmup)
        measured_count = tokens_for(static_rate, self.plan.seconds)
        warmup_file = self.workdir / f"{alg}-warmup.jwt"
        measured_file = self.workdir / f"{alg}-measured.jwt"
        started = time.monotonic()
        await asyncio.to_thread(
            mint_tokens, idp, aud=aud, first=0, count=warmup_count, path=warmup_file
        )
        await asyncio.to_thread(
            mint_tokens,
            idp,
            aud=aud,
            first=warmup_count,
            count=measured_count,
            path=measured_file,
        )
        f.mint_seconds = time.monotonic() - started
        f.tokens_minted = warmup_count + measured_count
        log(
            f"{alg}: minted {warmup_count:,} + {measured_count:,} ID-JAGs in "
            f"{f.mint_seconds:.1f} s (enough for {TOKEN_HEADROOM:g}x static's "
            f"{static_rate:,.0f} req/s)"
        )
        f.jwks.append(("before the probe", idp.jwks_requests))

        probe = idp.mint_id_jag(
            aud=aud, now=datetime.now(UTC), sub=f"{alg.lower()}-probe", lifetime=TOKEN_LIFETIME
        )
        status, answer = await asyncio.to_thread(
            http_call,
            "POST",
            self.server.url + "/agent/auth",
            registration_body(probe),
            {"Content-Type": "application/json"},
        )
        if status != 200 or not str(json.loads(answer).get("credential", "")).startswith("sk_"):
            raise RuntimeError(f"an ID-JAG registration answered {status}: {answer[:500]!r}")
        f.jwks.append(("after the probe", idp.jwks_requests))

        f.warmup = await self.token_run("warm-up", warmup_file, self.plan.warmup, collect_ids=False)
        f.jwks.append(("after the warm-up", idp.jwks_requests))

        await asyncio.sleep(SETTLE_SECONDS)
        await self.events.checkpoint()
        head = await self.events.head()
        f.measured = await self.token_run(
            f"ID-JAG {alg}", measured_file, self.plan.seconds, collect_ids=True
        )
        f.jwks.append(("after the measured run", idp.jwks_requests))
        await asyncio.sleep(SETTLE_SECONDS)
        recorded = await self.events.id_jag_credentials_after(head)
        ok_ids = set(f.measured.run.ok_ids)
        f.logged = Logged(
            ok=f.measured.run.count(200),
            ids=len(ok_ids),
            found=len(ok_ids & set(recorded)),
            recorded=len(recorded),
            sent=f.measured.sent,
            connections=CONNECTIONS,
            types=await self.events.types_after(head),
        )
        log("  " + f.logged.line())
        log("  " + f.logged.provisioning())
        return f

    async def run(self) -> Figures:
        f = self.figures
        await asyncio.sleep(SETTLE_SECONDS)
        log(f"(a) static: GET /healthz, c={CONNECTIONS}")
        f.static = await self.measure("GET /healthz", "get.lua", "/healthz")
        async with contextlib.AsyncExitStack() as providers:
            idps: list[IdentityProvider] = []
            for alg in ALGORITHMS:
                idp = await providers.enter_async_context(IdentityProvider(alg=alg))
                idps.append(idp)
                log(f"(b) ID-JAG {alg}: provider {idp.issuer}, keys at {idp.jwks_url}")
                f.algs.append(await self.id_jag(idp, f.static.rate))
            log(f"(c) for reference: anonymous registrations, c={CONNECTIONS}")
            f.anonymous = await self.measure("POST /agent/auth anon", "register.lua", "/agent/auth")
            for figures, idp in zip(f.algs, idps, strict=True):
                figures.jwks.append(("at the end of the whole run", idp.jwks_requests))
                figures.jwks_total = idp.jwks_requests
        return f


# -- the report ----------------------------------------------------------------------------


def _cpu(run: WrkRun) -> tuple[str, str, str]:
    if run.cpu is None:
        return ("", "", "")
    server, postgres, wrk = run.cpu.per_request_ms(run.requests)
    return (f"{server:.3f}", f"{postgres:.3f}", f"{wrk:.3f}")


def _row(label: str, run: WrkRun, static: WrkRun) -> str:
    statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(run.statuses.items())) or "none"
    server, postgres, wrk = _cpu(run)
    return cells(
        [
            label,
            f"{run.rate:,.0f}",
            f"{ratio(run.rate, static.rate):.3f}x",
            f"{run.p50_ms:.1f} / {run.p99_ms:.1f}",
            statuses,
            str(run.errors),
            f"{server} / {postgres} / {wrk}",
            " + ".join(map(str, run.split)) or "?",
        ]
    )


def print_machine(plan: Plan, machine: list[tuple[str, str]]) -> None:
    print_lines(machine)
    print(
        f"server: authledger serve --workers {plan.workers}; client: wrk -t1 -c{CONNECTIONS} "
        f"(one core at most) on the same host: client, server and Postgres share the "
        f"{os.cpu_count()} cores.\neach run {plan.seconds:g} s after a {plan.warmup:g} s "
        f"warm-up at the same concurrency; wrk --timeout {WRK_TIMEOUT}"
    )
    print()


def print_figures(f: Figures) -> None:
    assert f.static is not None
    assert f.anonymous is not None
    print(
        cells(
            [
                f"c={CONNECTIONS}",
                "req/s",
                "vs static",
                "p50 / p99 ms",
                "statuses",
                "socket errors",
                "CPU ms per request: server / Postgres / wrk",
                "connections per HTTP process",
            ]
        )
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    print(_row("static GET /healthz", f.static, f.static))
    for a in f.algs:
        assert a.measured is not None
        print(_row(f"**ID-JAG {a.alg}** POST /agent/auth", a.measured.run, f.static))
    print(_row("anonymous POST /agent/auth (reference)", f.anonymous, f.static))
    print()
    print("| | " + " | ".join(a.alg for a in f.algs) + " |")
    print("|---|" + "---|" * len(f.algs))
    rows: list[tuple[str, list[str]]] = [
        ("provider (issuer)", [a.issuer for a in f.algs]),
        (
            "tokens minted (warm-up + measured), minting time",
            [f"{a.tokens_minted:,}, {a.mint_seconds:.1f} s" for a in f.algs],
        ),
        (
            "warm-up: registrations/s, statuses",
            [
                f"{w.run.rate:,.0f}/s, "
                + ", ".join(f"{s}: {n:,}" for s, n in sorted(w.run.statuses.items()))
                for w in (a.warmup for a in f.algs)
                if w is not None
            ],
        ),
        (
            "measured run: tokens sent / in the file",
            [
                f"{a.measured.sent:,} / {a.measured.tokens:,}"
                for a in f.algs
                if a.measured is not None
            ],
        ),
        (
            "measured run: 200s / in the log / recorded in flight",
            [
                f"{a.logged.ok:,} / {a.logged.found:,} / {a.logged.in_flight}"
                for a in f.algs
                if a.logged is not None
            ],
        ),
        (
            "measured run: new delegations (new users) / on an existing delegation",
            [a.logged.split() for a in f.algs if a.logged is not None],
        ),
        (
            "JWKS requests the provider received, cumulative: "
            + " / ".join(moment for moment, _ in f.algs[0].jwks),
            [" / ".join(str(n) for _, n in a.jwks) for a in f.algs],
        ),
    ]
    for label, values in rows:
        print(cells([label, *values]))
    for a in f.algs:
        for label, tr in (("warm-up", a.warmup), ("measured", a.measured)):
            if tr is not None and tr.failure is not None:
                print(f"\n{a.alg} {label}: first answer other than 200: {tr.failure[:1000]}")


def print_targets(f: Figures, workers: int) -> bool:
    """The issue's target per algorithm; whether every request succeeded and was logged."""
    assert f.static is not None
    print()
    print("| target (from the issue) | measured | |")
    print("|---|---|---|")
    ok = True
    for a in f.algs:
        assert a.measured is not None
        assert a.logged is not None
        assert a.warmup is not None
        measured = ratio(a.measured.run.rate, f.static.rate)
        print(
            cells(
                [
                    f"ID-JAG {a.alg} registrations/s >= {TARGET}x static (c={CONNECTIONS})",
                    f"{a.measured.run.rate:,.0f} / {f.static.rate:,.0f} = {measured:.3f}x",
                    "met" if measured >= TARGET else "**not met**",
                ]
            )
        )
        print(
            cells(
                [
                    f"JWKS of the {a.alg} key fetched once (per HTTP process: {workers})",
                    f"{a.jwks_total} requests over the whole run",
                    "once per process" if 1 <= a.jwks_total <= workers else "**no**",
                ]
            )
        )
        failed = a.measured.failed + a.warmup.failed
        print(
            cells(
                [
                    f"every {a.alg} registration answered 200 and is in the log",
                    f"{failed} failed (warm-up and measured); every 200 committed: "
                    f"{'yes' if a.logged.holds else 'NO'}",
                    "yes" if failed == 0 and a.logged.holds else "**no**",
                ]
            )
        )
        exhausted = a.measured.exhausted + a.warmup.exhausted
        ok = ok and failed == 0 and a.logged.holds and exhausted == 0
        if exhausted:
            print(
                cells([f"{a.alg}: tokens ran out (raise MAX_TOKENS)", str(exhausted), "**void**"])
            )
    return ok


# -- main ----------------------------------------------------------------------------------


async def run(admin_url: str, plan: Plan) -> int:
    kept = "the server's log, wrk's reports and the tokens"
    loopback = {  # the provider's JWKS is on http://127.0.0.1
        "AUTHLEDGER_JWKS_ALLOW_LOOPBACK_HTTP": "true",
        "AUTHLEDGER_OUTBOUND_ALLOW": "127.0.0.0/8 ::1",
    }
    async with served(admin_url, "idjag", plan.workers, kept=kept, env=loopback) as session:
        bench = Bench(
            plan=plan,
            wrk=Wrk(session.server, session.workdir),
            server=session.server,
            events=EventLog(session.conn),
            workdir=session.workdir,
            admin_token=session.env["AUTHLEDGER_ADMIN_TOKEN"],
        )
        figures = await bench.run()
        problems = await session.stop()
        print_machine(plan, session.machine)
        print_figures(figures)
        ok = print_targets(figures, plan.workers)
        print(
            f"\nJWKS: each HTTP process keeps its own key cache (service/providers/jwks.py, "
            f"fresh for the provider's max-age of 300 s, clamped to at least 10 minutes), "
            f"so a key is fetched at most once per process that verifies its tokens: "
            f"{plan.workers} here."
        )
        return session.verdict(ok, problems)


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.splitlines()[0] if __doc__ else None)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    if not args.database_url.startswith(("postgresql://", "postgres://")):
        parser.error("--database-url must be a postgresql:// URL")
    seconds, warmup = run_seconds(args.quick)
    return run_to_end(run(args.database_url, Plan(seconds, warmup, args.workers)))


if __name__ == "__main__":
    sys.exit(main())

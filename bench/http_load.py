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

The scenarios are here; the rest is shared with the other benches: bench/wrk_bench.py (the
command line, the database and server of a run, its end), bench/served.py (the server),
bench/wrk_runs.py (wrk), bench/process_use.py (CPU, connections, memory),
bench/registrations.py (what the log holds), bench/http_load_report.py (plan, figures, tables).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping

from console import log
from http_load_report import (
    CONNECTIONS,
    FILL_CONNECTIONS,
    Figures,
    Plan,
    print_figures,
    print_machine,
    print_targets,
)
from process_use import memory_of
from registrations import REGISTER_BODY, Committed, Log
from served import Server, http_call
from wrk_bench import arguments, check_arguments, run_seconds, run_to_end, served
from wrk_runs import SETTLE_SECONDS, Wrk, WrkRun

FILL_MAX_SECONDS = 150  # a cap on each fill run; the count reached is reported as it is


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


async def run(admin_url: str, plan: Plan) -> int:
    kept = "the server's log and wrk's reports"
    async with served(admin_url, "http", plan.workers, kept=kept) as session:
        bench = Bench(plan, Wrk(session.server, session.workdir), session.server, Log(session.conn))
        figures = await bench.run()
        problems = await session.stop()
        print_machine(plan, session.machine)
        print_figures(figures)
        committed = print_targets(figures)
        return session.verdict(committed, problems)


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.splitlines()[0] if __doc__ else None)
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
    args = parser.parse_args(argv)
    if not 1_000 <= args.registrations <= 500_000 or not 0 <= args.more <= 500_000:
        parser.error("--registrations must be in [1000, 500000], --more in [0, 500000]")
    check_arguments(parser, args)
    seconds, warmup = run_seconds(args.quick)
    plan = Plan(
        seconds=seconds,
        warmup=warmup,
        registrations=args.registrations,
        more=args.more,
        workers=args.workers,
    )
    return run_to_end(run(args.database_url, plan))


if __name__ == "__main__":
    sys.exit(main())

"""Two (or more) values of a variable of `serve`'s environment against each other, in alternation.

    .venv/bin/python bench/serve_ab.py AUTHLEDGER_WRITE_HOLD_MS=1,4 [--passes N]
        [--connections C] [--seconds S] [--workload anonymous|static] [--database-url URL]

For each pass, for each value of the variable in turn: `serve --workers 2` with that value
(the worker runs throughout, as in bench/write_path.py), a 2 s warm-up, then anonymous
registrations (`bench/wrk/register.lua`), or with `--workload static` the static endpoint
every ratio divides by (`bench/wrk/get.lua`), for S seconds at C connections; the server is
stopped before the next value starts. Prints each run (registrations/s, p99, registrations
per committed batch) and each value's median. Alternation is the point: on a machine whose
speed drifts minute to minute (a shared VM's steal time), two values measured back to back
pass after pass compare where two separate bench runs do not. Drops its database at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

import asyncpg
from registrations import Log
from scratch_database import add_database_url
from served import Server, free_port
from write_path import Deployment, deployment
from wrk_runs import Wrk

# what a run drives: wrk's script and the path it sends to
WORKLOADS = {
    "anonymous": ("register.lua", "/agent/auth"),
    "static": ("get.lua", "/.well-known/oauth-protected-resource"),
}


async def run(args: argparse.Namespace) -> int:
    variable, _, values_text = args.setting.partition("=")
    values = values_text.split(",")
    if not variable or len(values) < 2:
        raise SystemExit("give a variable and two values or more: AUTHLEDGER_X=a,b")
    rates: dict[str, list[float]] = {value: [] for value in values}
    admin = await asyncpg.connect(args.database_url)
    try:
        async with deployment(admin, args.database_url, "ab") as deployed:
            events = Log(await asyncpg.connect(deployed.url))
            try:
                for turn in range(args.passes):
                    for value in values:
                        rate = await one_run(deployed, events, {variable: value}, turn + 1, args)
                        rates[value].append(rate)
            finally:
                await events.conn.close()
    finally:
        await admin.close()
    print(f"{args.workload} at c={args.connections}, {args.seconds:g} s a run:")
    for value, got in rates.items():
        listed = ", ".join(f"{rate:,.0f}" for rate in got)
        print(f"  {variable}={value}: median {statistics.median(got):,.0f}/s ({listed})")
    return 0


async def one_run(
    deployed: Deployment, events: Log, setting: dict[str, str], turn: int, args: argparse.Namespace
) -> float:
    """`serve --workers 2` with `setting`, a warm-up, one measured run; registrations/s."""
    ((variable, value),) = setting.items()
    server = Server({**deployed.env, **setting}, free_port(), deployed.workdir / "serve.log", 2)
    server.start()
    try:
        await server.wait_ready()
        wrk = Wrk(server, deployed.workdir, 2)
        script, path = WORKLOADS[args.workload]
        await wrk.run("warm-up", script, path, connections=64, seconds=2)
        head = await events.head()
        measured = await wrk.run(
            f"{args.workload} {path}",
            script,
            path,
            connections=args.connections,
            seconds=args.seconds,
        )
        batches = ""  # the static endpoint writes nothing
        if args.workload == "anonymous":
            batches = f", {await events.registrations_per_batch(head):.1f} registrations a batch"
    finally:
        server.stop()
    print(
        f"pass {turn}, {variable}={value}: {measured.rate:,.0f}/s, p99 {measured.p99_ms:.1f} ms"
        f"{batches}",
        flush=True,
    )
    return measured.rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("setting", help="AUTHLEDGER_NAME=value,value[,...]")
    add_database_url(parser)
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default="anonymous",
        help="anonymous registrations, or the static endpoint (write_path.py's baseline)",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())

"""The deployment against its floor, run after run: the ratio issue 11 resolves on.

    .venv/bin/python bench/floor_pairs.py [--kind anonymous|id_jag] [--rounds N] [--seconds S]
    .venv/bin/python bench/floor_pairs.py --interleaved [--rounds N] [--seconds S]

Without --interleaved, one round is two runs back to back, each a script of its own on a
fresh database:

- anonymous: `write_path.py --quick` (static, anonymous registrations at 1, 16 and 64
  connections, the relay) and `registration_floor.py` (its floor);
- id_jag: `write_path.py --only-id-jag` (static, ID-JAG registrations of returning users at
  16 and 64 connections, the relay) and `identity_floor.py --kind id_jag` (its floor).

The order swaps every round (ours first in odd rounds, the floor first in even ones), so that
a machine that slows or speeds up over the rounds weighs on both sides alike. A run that
fails (a 200 not committed, a relay behind, an exit status other than 0) is shown and not
counted. Prints every pair's rates at 16 and 64 connections with ours / floor, then the
median of each ratio over the rounds: single pairs on this machine move by a fifth from run
to run with no change to the code (docs/benchmarks.md, sessions 17-19), so the median of
alternated pairs is the figure to read. Each run's own output goes to a log file in a
temporary folder, named at the end.

--interleaved (anonymous registrations only) shortens what lies between the two sides of a
pair from a minute to a few seconds: both stay up for the whole run, each on a database of
its own with its own `authledger worker` (`write_path.py`'s deployment: serve --workers 2 on
one, the floor's two processes of `registration_floor.py` on the other, both as members of the
runtime role), and each round measures ours and the floor at 16 and then 64 connections,
slice by slice, the order swapped every round. Every 200 of ours must be in the log, as in
`write_path.py`; the floor's writers fail the run at an append the database did not take. A
side that is not measured is idle.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from registration_floor import measure
from registrations import Log
from scratch_database import add_database_url
from served import Server, free_port
from write_path import Bench, Deployment, Stack, deployment
from wrk_runs import Wrk

BENCH = Path(__file__).resolve().parent
# The rows each script prints: write_path.py's report table, a floor's table.
OURS_ROW = {
    "anonymous": re.compile(r"^\| anonymous registration \| (16|64) \| ([\d,]+) \|", re.M),
    "id_jag": re.compile(
        r"^\| ID-JAG registration, returning user \| (16|64) \| ([\d,]+) \|", re.M
    ),
}
STATIC_ROW = re.compile(r"^\| static \| 16 \| ([\d,]+) \|", re.M)
FLOOR_ROW = re.compile(r"^\| (16|64) \| ([\d,]+) \|", re.M)
COMMANDS = {
    "anonymous": (["write_path.py", "--quick"], ["registration_floor.py"]),
    "id_jag": (["write_path.py", "--only-id-jag"], ["identity_floor.py", "--kind", "id_jag"]),
}


@dataclass
class Run:
    rates: dict[int, float]  # registrations a second by connections: 16, 64
    static: float | None  # ours only: the static endpoint at 16 connections
    seconds: float


@dataclass
class Pair:
    ours: Run
    floor: Run

    def ratio(self, connections: int) -> float:
        return self.ours.rates[connections] / self.floor.rates[connections]


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def run_one(argv: list[str], pattern: re.Pattern[str], log_path: Path) -> Run | None:
    """One script to its end; its rates, or None (shown why) when it failed."""
    started = time.monotonic()
    with log_path.open("w") as out:
        done = subprocess.run(  # noqa: S603 - our own scripts, with our arguments
            [sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT, check=False, cwd=BENCH
        )
    text = log_path.read_text()
    rates = {int(c): _number(rate) for c, rate in pattern.findall(text)}
    if done.returncode != 0 or set(rates) != {16, 64}:
        print(f"  {argv[0]} failed (exit {done.returncode}, rates {rates}): see {log_path}")
        return None
    static = STATIC_ROW.search(text)
    return Run(rates, _number(static.group(1)) if static else None, time.monotonic() - started)


def medians(pairs: list[Pair]) -> None:
    for c in (16, 64):
        ratios = sorted(p.ratio(c) for p in pairs)
        print(
            f"c={c}: median ours / floor {statistics.median(ratios):.3f} over {len(pairs)} "
            f"pairs (lowest {ratios[0]:.3f}, highest {ratios[-1]:.3f})"
        )


async def interleaved(args: argparse.Namespace) -> int:
    """Both sides up at once, c=16 and c=64 slices alternated round by round."""
    admin = await asyncpg.connect(args.database_url)
    try:
        async with (
            deployment(admin, args.database_url, "write") as ours,
            deployment(admin, args.database_url, "floor") as floor,
        ):
            server = Server(ours.env, free_port(), ours.workdir / "serve.log", 2)
            server.start()
            conn = await asyncpg.connect(ours.url)
            try:
                await server.wait_ready()
                bench = Bench(
                    Stack(server, ours.worker, ours.env),
                    Wrk(server, ours.workdir, 2),
                    Log(conn),
                    args.seconds,
                )
                await bench.wrk.run(
                    "warm-up", "register.lua", "/agent/auth", connections=64, seconds=2
                )
                return await _rounds(bench, floor, args)
            finally:
                await conn.close()
                server.stop()
    finally:
        await admin.close()


async def _rounds(bench: Bench, floor: Deployment, args: argparse.Namespace) -> int:
    print(f"interleaved, anonymous: {args.rounds} rounds, {args.seconds:g} s a slice")
    print(
        "| round | first | ours c=16 · c=64 | floor c=16 · c=64 | ours / floor "
        "| ours' connections per HTTP child, c=16 |"
    )
    print("|---:|---|---|---|---|---|")
    floor_url = floor.env["AUTHLEDGER_DATABASE_URL"]  # a login of the runtime role, as ours
    pairs: list[Pair] = []
    committed = True
    for round_ in range(1, args.rounds + 1):
        ours_first = round_ % 2 == 1
        rates: dict[str, dict[int, float]] = {"ours": {}, "floor": {}}
        split = "?"
        for c in (16, 64):
            for side in ("ours", "floor") if ours_first else ("floor", "ours"):
                if side == "ours":
                    run, check = await bench.run_registrations("register.lua", c)
                    committed = committed and check.holds
                    rates["ours"][c] = run.rate
                    if c == 16:
                        split = " + ".join(map(str, run.split)) or "?"
                else:
                    row = await asyncio.to_thread(
                        measure, floor_url, c, 2, args.seconds, floor.worker.pid
                    )
                    found = FLOOR_ROW.search(row)
                    if found is None:
                        raise RuntimeError(f"the floor's row did not parse: {row}")
                    rates["floor"][c] = _number(found.group(2))
        pair = Pair(Run(rates["ours"], None, 0.0), Run(rates["floor"], None, 0.0))
        pairs.append(pair)
        print(
            f"| {round_} | {'ours' if ours_first else 'floor'} "
            f"| {pair.ours.rates[16]:,.0f} · {pair.ours.rates[64]:,.0f} "
            f"| {pair.floor.rates[16]:,.0f} · {pair.floor.rates[64]:,.0f} "
            f"| {pair.ratio(16):.3f} · {pair.ratio(64):.3f} | {split} |",
            flush=True,
        )
    medians(pairs)
    print(
        f"every 200 of ours committed: {'yes' if committed else 'NO'}; logs in {bench.wrk.workdir}"
    )
    return 0 if committed else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_database_url(parser)
    parser.add_argument("--kind", choices=tuple(COMMANDS), default="anonymous")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="each measured run")
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="anonymous only: both sides up at once, their runs alternated slice by slice",
    )
    args = parser.parse_args()
    if args.interleaved:
        if args.kind != "anonymous":
            parser.error("--interleaved measures anonymous registrations only")
        return asyncio.run(interleaved(args))
    logs = Path(tempfile.mkdtemp(prefix=f"authledger-floor-pairs-{args.kind}-"))
    common = ["--database-url", args.database_url, "--seconds", f"{args.seconds:g}"]
    ours_argv, floor_argv = (cmd + common for cmd in COMMANDS[args.kind])
    pairs: list[Pair] = []
    print(f"{args.kind}: {args.rounds} rounds, {args.seconds:g} s a measured run")
    print("| round | first | static c=16 | ours c=16 · c=64 | floor c=16 · c=64 | ours / floor |")
    print("|---:|---|---:|---|---|---|")
    for round_ in range(1, args.rounds + 1):
        ours_first = round_ % 2 == 1
        order = [("ours", ours_argv, OURS_ROW[args.kind]), ("floor", floor_argv, FLOOR_ROW)]
        runs: dict[str, Run | None] = {}
        for side, argv, pattern in order if ours_first else order[::-1]:
            runs[side] = run_one(argv, pattern, logs / f"round{round_}-{side}.log")
        ours, floor = runs["ours"], runs["floor"]
        if ours is None or floor is None:
            continue
        pair = Pair(ours, floor)
        pairs.append(pair)
        static = f"{ours.static:,.0f}" if ours.static else "-"
        print(
            f"| {round_} | {'ours' if ours_first else 'floor'} | {static} "
            f"| {ours.rates[16]:,.0f} · {ours.rates[64]:,.0f} "
            f"| {floor.rates[16]:,.0f} · {floor.rates[64]:,.0f} "
            f"| {pair.ratio(16):.3f} · {pair.ratio(64):.3f} |",
            flush=True,
        )
    if not pairs:
        print("no pair completed")
        return 1
    medians(pairs)
    print(f"logs in {logs}")
    return 0 if len(pairs) == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())

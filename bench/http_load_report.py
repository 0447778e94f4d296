"""What bench/http_load.py measures (its plan and figures) and how it reports them: the machine,
tables of the figures, and the issue's targets, met or not."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from console import cells, ratio
from machine import print_lines
from process_use import Memory
from registrations import Committed
from wrk_runs import WRK_TIMEOUT, WrkRun

CONNECTIONS = (16, 64)

FILL_CONNECTIONS = 64


# The targets.
TARGET_REGISTRATION = 0.3  # registrations/s >= 0.3x static, every event committed

TARGET_ME = 0.8  # /api/me >= 0.8x static

TARGET_P99_MS = 100.0  # p99 of registrations at 64 connections

TARGET_COMPLETE = 0.9  # complete-unknown with the registrations >= 0.9x without

TARGET_RSS_MB = 150.0  # all server processes, after the registrations

FLAT_TOLERANCE = 0.10  # "flat": the next registrations add at most 10 %


@dataclass(frozen=True)
class Plan:
    seconds: float
    warmup: float
    registrations: int
    more: int
    workers: int


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


def _every_run(f: Figures) -> list[tuple[str, dict[int, WrkRun]]]:
    """Each measurement's runs by connection count, with its label."""
    before, after = f.registrations_before, f.registrations_after
    return [
        ("static", f.static),
        ("registration", f.register),
        ("/api/me", f.me),
        (f"complete ({before:,})", f.complete_before),
        (f"complete ({after:,})", f.complete_after),
    ]


def _rate_row(label: str, runs: dict[int, WrkRun]) -> str:
    return cells([label, *(f"{runs[c].rate:,.0f}" for c in CONNECTIONS)])


def _ratio_row(label: str, top: dict[int, WrkRun], bottom: dict[int, WrkRun]) -> str:
    return cells([label, *(f"{ratio(top[c].rate, bottom[c].rate):.2f}x" for c in CONNECTIONS)])


def _latency_row(label: str, runs: dict[int, WrkRun]) -> str:
    return cells([label, *(f"{runs[c].p50_ms:.1f} / {runs[c].p99_ms:.1f}" for c in CONNECTIONS)])


def _count_row(label: str, runs: dict[int, WrkRun]) -> str:
    return cells([label, *(f"{runs[c].non_2xx} / {runs[c].errors}" for c in CONNECTIONS)])


def _cpu_row(label: str, runs: dict[int, WrkRun]) -> str:
    values = []
    for c in CONNECTIONS:
        cpu = runs[c].cpu
        if cpu is None:
            values.append("")
            continue
        server, postgres, _ = cpu.per_request_ms(runs[c].requests)
        values.append(f"{server:.3f} / {postgres:.3f}")
    return cells([label, *values])


def print_machine(plan: Plan, machine: list[tuple[str, str]]) -> None:
    print_lines(machine)
    print(
        f"server: authledger serve --workers {plan.workers}; client: wrk -t1 (one core at most) "
        f"on the same host: client, server and Postgres share the {os.cpu_count()} cores.\n"
        f"each run {plan.seconds:g} s after a {plan.warmup:g} s warm-up at "
        f"{max(CONNECTIONS)} connections; wrk --timeout {WRK_TIMEOUT}"
    )
    print()


def print_figures(f: Figures) -> None:
    before, after = f.registrations_before, f.registrations_after
    print(cells(["measurement", *(f"c={c}" for c in CONNECTIONS)]))
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
        cells(
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
        print(cells([f"complete ({label}): answers other than 401", *other]))
    print(_ratio_row("**complete-unknown after / before**", f.complete_after, f.complete_before))
    print()
    print(cells(["connections per HTTP child, mid-run", *(f"c={c}" for c in CONNECTIONS)]))
    print("|---|---:|---:|")
    for label, runs in _every_run(f):
        print(cells([label, *(" + ".join(map(str, runs[c].split)) for c in CONNECTIONS)]))
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
    reg_each = [ratio(f.register[c].rate, f.static[c].rate) for c in CONNECTIONS]
    me_each = [ratio(f.me[c].rate, f.static[c].rate) for c in CONNECTIONS]
    complete_each = [
        ratio(f.complete_after[c].rate, f.complete_before[c].rate) for c in CONNECTIONS
    ]
    reg, me, complete = min(reg_each), min(me_each), min(complete_each)
    p99 = f.register[c_high].p99_ms
    rss_after = f.memory[1][1].rss_mb if len(f.memory) > 1 else float("nan")
    rss_more = f.memory[2][1].rss_mb if len(f.memory) > 2 else float("nan")
    growth = ratio(rss_more - rss_after, rss_after)
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
        print(cells([label, measured, "met" if ok else "**not met**"]))
    lopsided = [
        f"{label} c={c} ({' + '.join(map(str, runs[c].split))})"
        for label, runs in _every_run(f)
        for c in CONNECTIONS
        if runs[c].lopsided
    ]
    print(
        "\nruns where one HTTP process held 90 % or more of the connections: "
        + (", ".join(lopsided) if lopsided else "none")
    )
    cpu_ratios = []
    for label, runs in (("registration", f.register), ("/api/me", f.me)):
        each = [ratio(_server_ms(f.static[c]), _server_ms(runs[c])) for c in CONNECTIONS]
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

"""`authledger audit verify`: walk the whole hash chain and every signed checkpoint, and name
the first break: a missing position (a deleted row), a row whose hash does not hold (edited),
a row that holds at another position (reordered), a chain that no longer reaches the hash a
checkpoint signed (rewritten, every later hash recomputed), a checkpoint past the head
(the log's tail deleted), or a checkpoint whose signature does not verify.

Speed: Postgres frames each row's fields with built-in functions (verify.sql `framed`) on its
own core while this process hashes the previous batch (events.hashchain.check_framed); two
connections take turns so a batch is always on its way. Work is sliced so the loop reads the
other connection's rows between slices.
"""

from __future__ import annotations

import asyncio
import json
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg

from events.hashchain import GENESIS, Framed, check_framed, diagnose
from events.sql import Conn, load_queries
from events.store import row_to_event
from service.audit.signed import BadCheckpoint, Checkpoint, Jwk
from service.audit.signed import verify as verify_checkpoint

Q = load_queries("service.audit", "verify.sql")
BATCH = 5000
SLICE = 500
NEIGHBOURS = 1000  # rows after a break searched for the place a moved row came from


@dataclass(frozen=True, slots=True)
class Problem:
    position: int
    reason: str

    def line(self) -> str:
        return f"position {self.position}: {self.reason}"


@dataclass
class Walk:
    """How far a walk got: events that held, the hash after the last, the first problem."""

    checked: int = 0
    prev_hash: bytes = GENESIS
    problem: Problem | None = None


@dataclass
class VerifyReport:
    head: int = 0
    checked: int = 0
    seconds: float = 0.0
    checkpoints: int = 0  # checkpoints whose signature and hash held
    anchored: int = 0  # the highest position a held checkpoint vouches for
    keys: str = "database"  # where the checkpoint keys came from
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_break(self) -> Problem | None:
        return min(self.problems, key=lambda p: p.position) if self.problems else None

    @property
    def rate(self) -> float:
        return self.checked / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        first = self.first_break
        return {
            "ok": self.ok,
            "head": self.head,
            "checked": self.checked,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.rate),
            "checkpoints_verified": self.checkpoints,
            "anchored_up_to": self.anchored,
            "unanchored_events": max(0, self.head - self.anchored),
            "keys": self.keys,
            "first_break": None if first is None else _problem(first),
            "problems": [_problem(p) for p in self.problems],
        }


def _problem(problem: Problem) -> dict[str, Any]:
    return {"position": problem.position, "reason": problem.reason}


async def walk(
    conns: Sequence[Conn],
    *,
    until: int,
    after: int = 0,
    prev_hash: bytes = GENESIS,
    expect: Mapping[int, bytes] | None = None,
    batch: int = BATCH,
) -> Walk:
    """Recompute the chain over (after, until] from `prev_hash`, stopping at the first problem;
    `expect`: hashes signed at some positions (checkpoints) the chain must reach. Ranges of
    `batch` positions are read ahead, one per connection, while the oldest is hashed."""
    expect = expect or {}
    marks = sorted(expect)
    result = Walk(prev_hash=prev_hash)
    expected, broken, stored = after + 1, None, 0
    ranges = iter(range(after, until, batch))
    pending: deque[tuple[Conn, asyncio.Future[list[asyncpg.Record]]]] = deque()

    def read_ahead(conn: Conn) -> None:
        start = next(ranges, None)
        if start is not None:
            end = min(start + batch, until)
            pending.append(
                (conn, asyncio.ensure_future(conn.fetch(Q["framed"], start, end, batch)))
            )

    for conn in conns:
        read_ahead(conn)
    try:
        while pending and broken is None:
            conn, fetched = pending.popleft()
            rows = await fetched
            read_ahead(conn)  # the connection just freed reads the next range
            for start in range(0, len(rows), SLICE):
                await asyncio.sleep(0)  # let the other connections' rows in
                chunk = cast(Sequence[Framed], rows[start : start + SLICE])
                checked, prev, broken = check_framed(chunk, result.prev_hash, expected)
                result.problem = _checkpoint_problem(chunk[:checked], expect, marks, after)
                if result.problem is not None:
                    return result
                result.checked += checked
                result.prev_hash, expected = prev, expected + checked
                if broken is not None:
                    stored = chunk[checked][0]
                    break
    finally:
        await asyncio.gather(*(fetched for _, fetched in pending), return_exceptions=True)
    if broken is not None:
        result.problem = await _explain(conns[0], broken, stored, result.prev_hash)
    elif expected <= until:
        result.problem = Problem(expected, f"position {expected} is missing")
    return result


def _checkpoint_problem(
    rows: Sequence[Framed], expect: Mapping[int, bytes], marks: Sequence[int], after: int
) -> Problem | None:
    """Rows that held (consecutive positions) against the signed hashes among them; `marks`:
    the signed positions, ascending."""
    if not rows or not marks:
        return None
    first, last = rows[0][0], rows[-1][0]
    index = bisect_left(marks, first)
    while index < len(marks) and marks[index] <= last:
        position = marks[index]
        if rows[position - first][1] != expect[position]:
            before = marks[index - 1] if index > 0 else after
            return Problem(
                position,
                f"the chain at position {position} differs from the checkpoint signed there: "
                f"events {before + 1}..{position} were rewritten (their hashes recomputed)",
            )
        index += 1
    return None


async def _explain(conn: Conn, broken: int, stored: int, prev_hash: bytes) -> Problem:
    """A missing position (deleted rows), or the stored row's hash failing: edited or moved."""
    if broken != stored:
        return Problem(
            broken, f"position {broken} is missing (the next stored is {stored}): rows deleted"
        )
    rows = await conn.fetch(Q["rows_between"], broken - 1, broken + NEIGHBOURS)
    events = [row_to_event(r) for r in rows]
    row = next(e for e in events if e.position == broken)
    return Problem(broken, diagnose(row, prev_hash, events))


async def load_keys(conn: Conn | asyncpg.Pool) -> dict[str, Jwk]:
    """The public JWK of every key that signed a checkpoint, by kid."""
    rows = await conn.fetch(Q["checkpoint_keys"])
    return {r["kid"]: json.loads(r["public_jwk"]) for r in rows}


def check_rows(
    rows: Sequence[asyncpg.Record], keys: Mapping[str, Jwk]
) -> tuple[list[Checkpoint], list[Problem]]:
    """Checkpoint rows whose signature holds and matches the row; problems for the rest."""
    good: list[Checkpoint] = []
    problems: list[Problem] = []
    for row in rows:
        position = row["position"]
        try:
            checkpoint = verify_checkpoint(row["jws"], keys)
        except BadCheckpoint as exc:
            problems.append(Problem(position, f"checkpoint at position {position}: {exc}"))
            continue
        if (checkpoint.position, checkpoint.chain_hash) != (position, row["chain_hash"]):
            reason = f"checkpoint at position {position}: its row differs from what was signed"
            problems.append(Problem(position, reason))
            continue
        good.append(checkpoint)
    return good, problems


async def checkpoints(
    conn: Conn, keys: Mapping[str, Jwk]
) -> tuple[list[Checkpoint], list[Problem]]:
    """Every stored checkpoint, checked (`check_rows`)."""
    return check_rows(await conn.fetch(Q["checkpoints"]), keys)


async def verify(
    pool: asyncpg.Pool, *, trusted_keys: Mapping[str, Jwk] | None = None, batch: int = BATCH
) -> VerifyReport:
    """The whole log and every checkpoint; see the module docstring."""
    started = time.perf_counter()
    async with pool.acquire() as first, pool.acquire() as second, pool.acquire() as third:
        keys = dict(trusted_keys) if trusted_keys is not None else await load_keys(first)
        good, problems = await checkpoints(first, keys)
        head = int(await first.fetchval(Q["head"]))
        report = VerifyReport(head=head, problems=problems)
        report.keys = "trusted JWKS" if trusted_keys is not None else "database"
        past = [c for c in good if c.position > head]
        for checkpoint in past[:1]:
            reason = (
                f"checkpoint at position {checkpoint.position} is past the head {head}: "
                f"events {head + 1}..{checkpoint.position} were deleted"
            )
            report.problems.append(Problem(head + 1, reason))
        expect = {c.position: c.chain_hash for c in good if c.position <= head}
        result = await walk((first, second, third), until=head, expect=expect, batch=batch)
    report.checked = result.checked
    if result.problem is not None:
        report.problems.append(result.problem)
    reached = result.checked if result.problem is None else result.problem.position - 1
    held = [p for p in expect if p <= reached]
    report.checkpoints = len(held)
    report.anchored = max(held, default=0)
    report.seconds = time.perf_counter() - started
    return report

"""`authledger audit verify`: walk the whole hash chain and every signed checkpoint, and name
the first break: a missing position (a deleted row), a row whose hash does not hold (edited),
a row that holds at another position (reordered), a chain that no longer reaches the hash a
checkpoint signed (rewritten, every later hash recomputed), a checkpoint past the head
(the log's tail deleted), or a checkpoint whose signature does not verify.

It vouches only with anchors the database cannot rewrite (service/audit/vouch.py): keys the
auditor pinned, and the newest checkpoint published off the database, which the log must reach
and agree with (a tail cut together with its checkpoint rows shows there). Without them the
verdict is `unvouched`: the chain holds, but nothing outside the database says it is the one
the service wrote.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg

from events.hashchain import GENESIS, Framed, check_framed, diagnose
from events.sql import Conn, load_queries
from events.store import row_to_event
from service.audit.published import Published
from service.audit.signed import BadCheckpoint, Checkpoint, Jwk, UnknownKey
from service.audit.signed import verify as verify_checkpoint
from service.audit.vouch import Anchor, compare_published, key_reasons

Q = load_queries("service.audit", "verify.sql")
BATCH = 5000
SLICE = 500
Progress = Callable[[int, int], None]  # (positions checked, to check), as the walk goes
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
    unvouched: list[str] = field(default_factory=list)  # why it cannot vouch (none: it does)
    published: Anchor | None = None  # the newest checkpoint published off the database

    @property
    def ok(self) -> bool:
        """No break found (the chain and every checkable signature hold)."""
        return not self.problems

    @property
    def verdict(self) -> str:
        """`broken`, `unvouched` (holds, but not against pinned keys and the published
        checkpoint), or `verified`."""
        if self.problems:
            return "broken"
        return "unvouched" if self.unvouched else "verified"

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
            "verdict": self.verdict,
            "head": self.head,
            "checked": self.checked,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.rate),
            "checkpoints_verified": self.checkpoints,
            "anchored_up_to": self.anchored,
            "unanchored_events": max(0, self.head - self.anchored),
            "keys": self.keys,
            "published": None if self.published is None else self.published.as_json(),
            "first_break": None if first is None else _problem(first),
            "problems": [_problem(p) for p in self.problems],
            "not_vouched": list(self.unvouched),
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
    progress: Progress | None = None,
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
                if progress is not None:
                    progress(result.checked, until - after)
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
    rows: Sequence[asyncpg.Record],
    keys: Mapping[str, Jwk],
    unknown: dict[str, list[int]] | None = None,
) -> tuple[list[Checkpoint], list[Problem]]:
    """Checkpoint rows whose signature holds and matches the row; problems for the rest.
    With `unknown`, a row signed by a key not among `keys` is noted there (kid: positions)
    instead: unchecked rather than false (pinned keys that predate a rotation)."""
    good: list[Checkpoint] = []
    problems: list[Problem] = []
    for row in rows:
        position = row["position"]
        try:
            checkpoint = verify_checkpoint(row["jws"], keys)
        except UnknownKey as exc:
            if unknown is None:
                problems.append(Problem(position, f"checkpoint at position {position}: {exc}"))
            else:
                unknown.setdefault(exc.kid, []).append(position)
            continue
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
    pool: asyncpg.Pool,
    *,
    trusted_keys: Mapping[str, Jwk] | None = None,
    published: Published | None = None,
    batch: int = BATCH,
    progress: Progress | None = None,
) -> VerifyReport:
    """The whole log and every checkpoint, the newest published checkpoint with them; see the
    module docstring. `trusted_keys`: the keys the auditor pinned (None: the database's);
    `progress` follows the walk over the log."""
    started = time.perf_counter()
    pinned = trusted_keys is not None
    async with pool.acquire() as first, pool.acquire() as second, pool.acquire() as third:
        keys = dict(trusted_keys) if trusted_keys is not None else await load_keys(first)
        rows = await first.fetch(Q["checkpoints"])
        unknown: dict[str, list[int]] = {}
        good, problems = check_rows(rows, keys, unknown if pinned else None)
        head = int(await first.fetchval(Q["head"]))
        report = VerifyReport(head=head, problems=problems)
        report.keys = "pinned" if pinned else "database"
        report.unvouched.extend(key_reasons(pinned, unknown))
        anchor = compare_published(published, keys, stored=len(rows), report=report.unvouched)
        report.published = anchor
        if anchor is not None and anchor.refused is not None:
            report.problems.append(Problem(anchor.claimed, anchor.refused))
        signed = {c.position: c.chain_hash for c in good}
        if anchor is not None and anchor.checkpoint is not None:
            published_at = anchor.checkpoint
            if signed.get(published_at.position, published_at.chain_hash) != (
                published_at.chain_hash
            ):
                reason = (
                    f"the checkpoint published at position {published_at.position} "
                    "differs from the one the database holds there"
                )
                report.problems.append(Problem(published_at.position, reason))
            signed.setdefault(published_at.position, published_at.chain_hash)
        past = sorted(p for p in signed if p > head)
        for position in past[:1]:
            source = "published " if anchor is not None and anchor.position == position else ""
            reason = (
                f"{source}checkpoint at position {position} is past the head {head}: "
                f"events {head + 1}..{position} were deleted"
            )
            report.problems.append(Problem(head + 1, reason))
        expect = {p: h for p, h in signed.items() if p <= head}
        result = await walk(
            (first, second, third), until=head, expect=expect, batch=batch, progress=progress
        )
    report.checked = result.checked
    if result.problem is not None:
        report.problems.append(result.problem)
    reached = result.checked if result.problem is None else result.problem.position - 1
    held = [p for p in expect if p <= reached]
    report.checkpoints = len([c for c in good if c.position in held])
    report.anchored = max(held, default=0)
    if anchor is not None and anchor.position is not None:
        anchor.held = anchor.position in held
    report.seconds = time.perf_counter() - started
    return report

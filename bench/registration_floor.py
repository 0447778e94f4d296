"""The floor under an anonymous registration: only the work no implementation can skip.

    .venv/bin/python bench/registration_floor.py [--seconds S] [--processes P] [--no-worker]
                                                 [--database-url URL] [--as-superuser]

What one registration must do, whatever serves it, with nothing else: make its ids, claim
token and API key (CSPRNG) and their SHA-256 hashes, a data key for the new subject wrapped
under the key-encryption key, the client IP sealed under it (AES-GCM), the two events
(`registration.created`, `credential.issued`) encoded and framed for the hash chain; then,
batched with whatever else is waiting in its process (group commit, one batch in flight,
as events/writer.py batches), one transaction: the subject keys (one statement), the events
through `events_append` (one call: the lock, the positions, the chain, the insert, the
notify), the `registrations` and `credentials` rows (one statement each, executed once for
the batch: `unnest` of one array per column, as the server writes them), COMMIT. The same
rows and the same commits as `authledger serve`, no HTTP, no framework, no logging. And,
as issue 11 asks of every registration, its events published on JetStream: `authledger
worker` runs beside the writers, as it does beside `serve` (--no-worker: without it, the
floor of sessions 3-5).

P processes (default 2, as `serve --workers 2`) each run C/P clients for S seconds at C = 1, 16
and 64, against a fresh, migrated database, with fsync and synchronous_commit as the server has
them, writing as a member of the runtime role as the server does (so the write guards' checks
are paid; --as-superuser skips them). Prints registrations/s and latency per C, the
CPU per registration of these processes, of the worker, of Postgres and of everything else
the machine did meanwhile, and checks at the end that the log holds every registration, that
its hash chain verifies and that JetStream holds every event.
bench/write_path.py's figures are put beside these in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import multiprocessing
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
import msgspec
import nats
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from process_use import cpu_of, postgres_cpu, spent
from scratch_database import BenchLog, add_database_url, with_database
from served import NATS_URL, migrate
from write_path import runtime_login, stack_env, start_worker, stop_worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.appends import APPEND_LOCK
from events.hashchain import framed_after_position
from events.ids import time_ordered_token
from events.rows import ColumnForm
from events.sql import Conn

_encode = msgspec.json.Encoder().encode
Item = TypeVar("Item")  # what one request leaves for the writer
KEK = AESGCM(os.urandom(32))
SCOPES = ["api.read"]
# Each table's rows of a batch in one execution (events.rows.ColumnForm, as the server writes
# them): one array per column.
KEYS = ColumnForm(
    "INSERT INTO subject_keys (subject_id, wrapped_key) "
    "SELECT * FROM unnest($1::text[], $2::bytea[])"
)
REGISTRATIONS = ColumnForm(
    "INSERT INTO registrations (registration_id, tenant_id, kind, status, "
    "requested_credential_type, claim_token_hash, expires_at, credential_id, version, "
    "created_at, updated_at) SELECT r, 'default', 'anonymous', 'unclaimed', 'api_key', h, e, c, "
    "1, t, t FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], "
    "$5::timestamptz[]) AS u (r, h, e, c, t)"
)
CREDENTIALS = ColumnForm(
    "INSERT INTO credentials (credential_id, tenant_id, kind, token_hash, scopes, issued_via, "
    "registration_id, user_id, status, expires_at, issued_at, version) SELECT c, 'default', "
    "'api_key', h, string_to_array(s, ' '), 'anonymous', r, NULL, 'active', NULL, t, 1 "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) "
    "AS u (c, h, s, r, t)",
    joined=(2,),
)


async def write_rows(conn: Conn, form: ColumnForm, rows: Sequence[tuple[object, ...]]) -> None:
    columns = form.columns(rows)
    assert columns is not None, "the floor's rows always join"
    await conn.execute(form.sql, *columns)


APPEND = (
    "SELECT status, first_position, hashes FROM events_append($1, $2::text[], $3::text[], "
    "$4::integer[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::integer[], $10::text[], "
    "$11::integer[], $12::timestamptz[], $13, $14::json[], $15::json[], $16::bytea[])"
)


# measure()'s rows: CPU milliseconds per registration of the floor's processes, the worker,
# Postgres and the rest of the machine (the kernel, whatever else ran meanwhile)
TABLE_HEAD = (
    "| connections | registrations/s | p50 ms | p99 ms | Python CPU ms "
    "| worker CPU ms | Postgres CPU ms | rest CPU ms |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Registration:
    """One registration's unavoidable work before the database."""

    __slots__ = ("api_key", "claim", "done", "events", "expires", "key_row", "rows")

    def __init__(self, now: datetime, correlation_id: str | None = None) -> None:
        # the credential id as service.crypto.tokens.new_credential_id makes it
        rid, cid = "reg_" + secrets.token_hex(12), time_ordered_token("cred_")
        claim, api_key = secrets.token_urlsafe(32), "sk_" + secrets.token_urlsafe(32)
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        wrapped = nonce + KEK.encrypt(nonce, data_key, b"subject_keys:" + rid.encode())
        nonce = os.urandom(12)
        sealed_ip = AESGCM(data_key).encrypt(nonce, b"127.0.0.1", rid.encode())
        metadata = _encode(
            {
                "correlation_id": correlation_id or uuid.uuid4().hex,
                "actor": "agent",
                "client_ip": "pii1." + rid + "." + (nonce + sealed_ip).hex(),
            }
        )
        expires = now + timedelta(days=1)
        created = _encode(
            {
                "type": "registration.created",
                "registration_id": rid,
                "kind": "anonymous",
                "requested_credential_type": "api_key",
                "claim_token_hash": _sha(claim),
                "expires_at": expires,
                "pre_claim_scopes": SCOPES,
                "post_claim_scopes": SCOPES,
                "credential_id": cid,
            }
        )
        issued = _encode(
            {
                "type": "credential.issued",
                "credential_id": cid,
                "kind": "api_key",
                "token_hash": _sha(api_key),
                "scopes": SCOPES,
                "issued_via": "anonymous",
                "registration_id": rid,
            }
        )
        self.events = [
            ("registration", rid, "registration.created", 2, created, metadata, now),
            ("credential", cid, "credential.issued", 2, issued, metadata, now),
        ]
        self.claim, self.api_key, self.expires = claim, api_key, expires
        self.key_row = (rid, wrapped)
        self.rows = ((rid, _sha(claim), expires, cid, now), (cid, _sha(api_key), SCOPES, rid, now))
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def answer(self) -> bytes:
        """The 200 body `serve` answers (§5.1), for bench/floor_server.py."""
        rid = self.key_row[0]
        return _encode(
            {
                "registration_id": rid,
                "registration_type": "anonymous",
                "credential_type": "api_key",
                "credential": self.api_key,
                "credential_expires": None,
                "scopes": SCOPES,
                "claim_url": "http://127.0.0.1/agent/auth/claim",
                "claim_token": self.claim,
                "claim_token_expires": self.expires,
                "post_claim_scopes": SCOPES,
            }
        )


async def commit(conn: Conn, batch: list[Registration]) -> None:
    recorded = datetime.now(UTC)
    events = [e for r in batch for e in r.events]
    ids = [uuid.uuid4() for _ in events]
    rests = [
        framed_after_position(
            event_id=i,
            tenant_id="default",
            stream_type=st,
            stream_id=sid,
            stream_version=1,
            type=t,
            schema_version=v,
            occurred_at=at,
            recorded_at=recorded,
            payload=p,
            metadata=m,
        )
        for i, (st, sid, t, v, p, m, at) in zip(ids, events, strict=True)
    ]
    async with conn.transaction():
        await write_rows(conn, KEYS, [r.key_row for r in batch])
        answer = await conn.fetchrow(
            APPEND,
            APPEND_LOCK,
            [],
            [],
            [],
            ids,
            ["default"] * len(events),
            [e[0] for e in events],
            [e[1] for e in events],
            [1] * len(events),
            [e[2] for e in events],
            [e[3] for e in events],
            [e[6] for e in events],
            recorded,
            [e[4].decode() for e in events],
            [e[5].decode() for e in events],
            rests,
        )
        if answer is None or answer["status"] != "appended":
            raise RuntimeError(f"events_append answered {answer}")
        await write_rows(conn, REGISTRATIONS, [r.rows[0] for r in batch])
        await write_rows(conn, CREDENTIALS, [r.rows[1] for r in batch])
    for r in batch:
        r.done.set_result(None)


async def writer(
    pool: asyncpg.Pool,
    queue: asyncio.Queue[Item],
    commit: Callable[[Conn, list[Item]], Awaitable[None]],
) -> None:
    """Group commit: whatever waits goes in one batch, one batch in flight (as
    events/writer.py); `commit` writes a batch (bench/onboarding_floor.py passes its own)."""
    slots = asyncio.Semaphore(1)

    async def run(batch: list[Item]) -> None:
        try:
            async with pool.acquire() as conn:
                await commit(conn, batch)
        finally:
            slots.release()

    while True:
        first = await queue.get()
        await slots.acquire()
        batch = [first]
        while not queue.empty() and len(batch) < 500:
            batch.append(queue.get_nowait())
        asyncio.get_running_loop().create_task(run(batch))


async def client(queue: asyncio.Queue[Registration], until: float, latencies: list[float]) -> int:
    count = 0
    while time.monotonic() < until:
        started = time.perf_counter()
        registration = Registration(datetime.now(UTC))
        queue.put_nowait(registration)
        await registration.done
        latencies.append(time.perf_counter() - started)
        count += 1
    return count


async def process_main(url: str, clients: int, seconds: float) -> tuple[int, list[float], float]:
    pool = await asyncpg.create_pool(url, min_size=2, max_size=10)
    queue: asyncio.Queue[Registration] = asyncio.Queue()
    task = asyncio.get_running_loop().create_task(writer(pool, queue, commit))
    latencies: list[float] = []
    cpu = time.process_time()
    until = time.monotonic() + seconds
    counts = await asyncio.gather(*(client(queue, until, latencies) for _ in range(clients)))
    cpu = time.process_time() - cpu
    task.cancel()
    await pool.close()
    return sum(counts), latencies, cpu


def _child(url: str, clients: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from service.runtime.processes import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        out.put(runner.run(process_main(url, clients, seconds)))


def _follow_postgres(seen: dict[int, float], stop: threading.Event) -> None:
    """Keep the latest CPU reading of every postgres process until `stop`."""
    while True:
        seen.update(postgres_cpu())
        if stop.wait(0.1):
            seen.update(postgres_cpu())
            return


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def measure(
    url: str,
    connections: int,
    processes: int,
    seconds: float,
    worker: int | None,
    *,
    target: Callable[..., None] = _child,
    extra: tuple[object, ...] = (),
    numbered: bool = False,
) -> str:
    """A table row: `connections` clients split over `processes` children, each running
    `target(url, clients, seconds, out, *extra)`, which puts (count, latencies, CPU seconds of
    the measured loop[, CPU seconds of its set-up before the clock started]) on `out`
    (bench/identity_floor.py passes its own). The set-up's CPU is left out of "rest".
    `numbered`: each child is also given the number of its first client and `connections`."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    share = [connections // processes + (i < connections % processes) for i in range(processes)]
    firsts = [sum(share[:i]) for i in range(len(share))]
    children = [
        context.Process(
            target=target,
            args=(url, n, seconds, out, *extra, *((first, connections) if numbered else ())),
        )
        for n, first in zip(share, firsts, strict=True)
        if n > 0
    ]
    busy_before, postgres_before = _busy_seconds(), postgres_cpu()
    # The writers' backends end with their pools, before the run's last look: follow them.
    postgres_seen, stop = dict(postgres_before), threading.Event()
    watcher = threading.Thread(target=_follow_postgres, args=(postgres_seen, stop), daemon=True)
    watcher.start()
    worker_before = (cpu_of(worker) or 0.0) if worker is not None else 0.0
    for child in children:
        child.start()
    results = [out.get(timeout=seconds + 60) for _ in children]
    for child in children:
        child.join()
    busy = _busy_seconds() - busy_before
    stop.set()
    watcher.join()
    postgres = spent(postgres_before, postgres_seen)
    worker_cpu = ((cpu_of(worker) or 0.0) - worker_before) if worker is not None else 0.0
    count = sum(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[1])
    python_cpu = sum(r[2] for r in results)
    set_up = sum(r[3] for r in results if len(r) > 3)  # e.g. tokens minted before the clock
    rest = busy - python_cpu - set_up - worker_cpu - postgres  # the kernel, whatever else ran
    p50, p99 = (latencies[int(len(latencies) * q)] * 1000 for q in (0.5, 0.99))
    return (
        f"| {connections} | {count / seconds:,.0f} | {p50:.2f} | {p99:.2f} "
        f"| {python_cpu / count * 1000:.3f} | {worker_cpu / count * 1000:.3f} "
        f"| {postgres / count * 1000:.3f} | {rest / count * 1000:.3f} |"
    )


async def published(stream: str, events: int, within: float = 30.0) -> float | None:
    """Seconds until the JetStream stream holds `events` messages; None if it never did."""
    started = time.monotonic()
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        while time.monotonic() - started < within:
            with contextlib.suppress(nats.errors.Error):
                if (await js.stream_info(stream)).state.messages >= events:
                    return time.monotonic() - started
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    return None


async def run(args: argparse.Namespace) -> int:
    name = f"authledger_bench_floor_{secrets.token_hex(6)}"
    url = with_database(args.database_url, name)
    admin = await asyncpg.connect(args.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await migrate({**os.environ, "AUTHLEDGER_DATABASE_URL": url})
        # the writes go in as the runtime role, as the server's do: the guards' checks at
        # COMMIT are part of the unavoidable work (--as-superuser: they are skipped)
        writer = url if args.as_superuser else await runtime_login(admin, url)
        role = "the admin URL's user" if args.as_superuser else "a member of the runtime role"
        print(f"floor: {args.processes} processes, {args.seconds:g} s a run, as {role}")
        env = stack_env(writer, secrets.token_hex(4), smtp_port=9)  # no mail: never connects
        worker = None if args.no_worker else start_worker(env, Path(os.devnull))
        if worker is not None:
            print("with `authledger worker` publishing the log on JetStream, as serve has it")
        print(TABLE_HEAD)
        reader = BenchLog(await asyncpg.connect(url))
        per_batch: list[str] = []
        try:
            for connections in (1, 16, 64):
                before = await reader.head()
                line = await asyncio.to_thread(
                    measure,
                    writer,
                    connections,
                    args.processes,
                    args.seconds,
                    worker.pid if worker is not None else None,
                )
                print(line, flush=True)
                per_batch.append(f"{await reader.registrations_per_batch(before):.1f}")
            print(f"registrations a batch at c=1 / 16 / 64: {' / '.join(per_batch)}")
            head = int(await admin_head(url))
            lag = (
                await published(env["AUTHLEDGER_NATS_STREAM"], head) if worker is not None else None
            )
        finally:
            await reader.conn.close()
            if worker is not None:
                stop_worker(worker)
        if worker is not None:
            print(
                f"JetStream: every one of {head:,} events "
                + (
                    f"published {lag:.2f} s after the last run"
                    if lag is not None
                    else "NOT published"
                )
            )
        verifies = await chain_verifies(url)
        conn = await asyncpg.connect(url)
        try:
            counts = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM events) AS events, "
                "(SELECT count(*) FROM registrations) AS registrations"
            )
        finally:
            await conn.close()
        if counts is None:
            raise RuntimeError("no counts")
        ok = verifies and counts["events"] == 2 * counts["registrations"]
        ok = ok and (args.no_worker or lag is not None)
        print(
            f"log: {counts['events']:,} events for {counts['registrations']:,} registrations; "
            f"chain verifies: {verifies}"
        )
        return 0 if ok else 1
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def chain_verifies(url: str) -> bool:
    """Whether the whole log's hash chain verifies (events.hashchain.verify_log)."""
    from events.hashchain import verify_log
    from events.store import EventStore

    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        return bool((await verify_log(EventStore(pool).read_all)).ok)
    finally:
        await pool.close()


async def admin_head(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
    finally:
        await conn.close()


def floor_arguments(description: str | None, no_worker: str) -> argparse.ArgumentParser:
    """The floors' command line: the database, --seconds, --processes, --no-worker (`no_worker`
    says what is then left out) and --as-superuser."""
    parser = argparse.ArgumentParser(description=description)
    add_database_url(parser)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--no-worker", action="store_true", help=no_worker)
    parser.add_argument(
        "--as-superuser",
        action="store_true",
        help="write as the admin URL's user (the guards skip their check), not the runtime role",
    )
    return parser


def main() -> int:
    parser = floor_arguments(
        __doc__.splitlines()[0] if __doc__ else None,
        "without `authledger worker` (the log is then not published on JetStream)",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

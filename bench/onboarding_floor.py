"""The floor under a v0.6 onboarding, beside a v1 registration's: the unavoidable work only.

    .venv/bin/python bench/onboarding_floor.py [--seconds S] [--processes P] [--rounds R]
                                               [--database-url URL]

Issue 14 asks v0.6 onboarding to be no slower per agent than a v1 registration. This script
does, with no HTTP, no framework and no logging, only what each must do, through the same
kind of writer (per process, group commit, one batch in flight, as events/writer.py), as a
member of the runtime role (the write guards' checks paid):

- a v1 registration (bench/registration_floor.py's `Registration`): its ids, claim token and
  API key (CSPRNG) and their SHA-256 hashes, a data key wrapped under the KEK, the client IP
  sealed under it, `registration.created` and `credential.issued`; one commit: the subject
  key, both events through `events_append`, the `registrations` and `credentials` rows;
- a v0.6 agent, in the two requests the contract has (V1 anonymous, then V6):
  1. the same ids, claim token, data key and sealed IP, `registration.created`, and the
     service-signed identity assertion (an EdDSA JWS, as our ring signs); one commit: the
     subject key, the event, the `registrations` row;
  2. the assertion's signature checked and its claims read, the registration read (one
     query), an access token (CSPRNG, SHA-256, an EdDSA-signed `at+jwt`: each exchange mints
     its own, case 6) and `credential.issued`; one commit: the event, the `credentials` row,
     and the registration streams' versions read again under the append lock (one statement
     a batch), so no claim slips between the read and the write.

Both write two events per agent. R rounds alternate the two at C = 16 and 64 clients (split
over P processes, default 2, as `serve --workers 2`); printed: registrations/s, agents/s, the
ratio in each round, and the CPU per agent of these processes and of Postgres. bench/
write_path.py's (i) is put beside it in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import secrets
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from process_use import postgres_cpu, spent
from registration_floor import (
    APPEND,
    KEK,
    KEYS,
    SCOPES,
    Registration,
    _follow_postgres,
    _sha,
    write_rows,
    writer,
)
from scratch_database import add_database_url, with_database
from served import migrate
from write_path import runtime_login

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.appends import APPEND_LOCK
from events.hashchain import framed_after_position
from events.ids import time_ordered_token
from events.rows import ColumnForm
from events.sql import Conn

_encode = msgspec.json.Encoder().encode
SIGNER = Ed25519PrivateKey.generate()  # per process: each signs and checks its own
VERIFIER = SIGNER.public_key()
ISSUER = "http://127.0.0.1"
# Each table's rows of a batch in one execution (events.rows.ColumnForm), as the server
# writes them.
REGISTRATIONS = ColumnForm(
    "INSERT INTO registrations (registration_id, tenant_id, kind, status, "
    "requested_credential_type, claim_token_hash, expires_at, credential_id, version, "
    "created_at, updated_at) SELECT r, 'default', 'anonymous', 'unclaimed', 'access_token', "
    "h, e, c, 1, t, t FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], "
    "$5::timestamptz[]) AS u (r, h, e, c, t)"
)
CREDENTIALS = ColumnForm(
    "INSERT INTO credentials (credential_id, tenant_id, kind, token_hash, scopes, issued_via, "
    "registration_id, user_id, status, expires_at, issued_at, version) SELECT c, 'default', "
    "k, h, string_to_array(s, ' '), 'anonymous', r, NULL, 'active', e, t, 1 FROM "
    "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], "
    "$7::timestamptz[]) AS u (c, k, h, s, r, e, t)",
    joined=(3,),
)
READ_REGISTRATION = (
    "SELECT version, status, expires_at FROM registrations "
    "WHERE tenant_id = 'default' AND registration_id = $1"
)
VERSIONS_UNDER_LOCK = (
    "SELECT stream_id, max(stream_version) AS version FROM events "
    "WHERE tenant_id = 'default' AND stream_id = ANY($1::text[]) GROUP BY stream_id"
)
Event = tuple[str, str, str, int, bytes, bytes, datetime]  # type, id, event type, schema, ...


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(typ: str, claims: dict[str, object]) -> str:
    head = _b64(_encode({"alg": "EdDSA", "typ": typ, "kid": "k1"}))
    signing_input = f"{head}.{_b64(_encode(claims))}"
    return f"{signing_input}.{_b64(SIGNER.sign(signing_input.encode()))}"


def check(token: str) -> dict[str, object]:
    head, body, signature = token.split(".")
    VERIFIER.verify(_unb64(signature), f"{head}.{body}".encode())  # raises on a bad one
    claims: dict[str, object] = msgspec.json.decode(_unb64(body))
    return claims


class Work:
    """One commit's share of a request: its events (each a stream's first), its rows."""

    __slots__ = ("checks", "credential", "done", "events", "key", "registration")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.key: tuple[str, bytes] | None = None
        self.registration: tuple[object, ...] | None = None
        self.credential: tuple[object, ...] | None = None
        self.checks: list[str] = []  # registration streams read again under the lock
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


def v1_registration(now: datetime) -> Work:
    """registration_floor.py's registration, as one commit's work."""
    made = Registration(now)
    work = Work()
    work.events = list(made.events)
    work.key = made.key_row
    rid, claim_hash, expires, cid, at = made.rows[0]
    work.registration = (rid, claim_hash, expires, cid, at)
    cid, token_hash, scopes, rid, at = made.rows[1]
    work.credential = (cid, "api_key", token_hash, scopes, rid, None, at)
    return work


def v06_identity(now: datetime) -> tuple[Work, str, str]:
    """V1 anonymous: the registration and its assertion; (work, registration id, assertion)."""
    rid = "reg_" + secrets.token_hex(12)
    claim = "clm_" + secrets.token_urlsafe(32)
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    wrapped = nonce + KEK.encrypt(nonce, data_key, b"subject_keys:" + rid.encode())
    nonce = os.urandom(12)
    sealed_ip = AESGCM(data_key).encrypt(nonce, b"127.0.0.1", rid.encode())
    metadata = _encode(
        {
            "correlation_id": uuid.uuid4().hex,
            "actor": "agent",
            "door": "v06",
            "dialect": "0.6.0",
            "client_ip": "pii1." + rid + "." + (nonce + sealed_ip).hex(),
        }
    )
    expires = now + timedelta(days=1)
    created = _encode(
        {
            "type": "registration.created",
            "registration_id": rid,
            "kind": "anonymous",
            "requested_credential_type": "access_token",
            "claim_token_hash": _sha(claim),
            "expires_at": expires,
            "pre_claim_scopes": SCOPES,
            "post_claim_scopes": ["api.read", "api.write"],
            "dialect": "v06",
        }
    )
    issued_at = int(now.timestamp())
    assertion = sign(
        "identity-assertion+jwt",
        {"iss": ISSUER, "aud": ISSUER, "sub": rid, "iat": issued_at, "exp": issued_at + 3600,
         "jti": secrets.token_urlsafe(16), "gen": 0},
    )  # fmt: skip
    work = Work()
    work.events = [("registration", rid, "registration.created", 2, created, metadata, now)]
    work.key = (rid, wrapped)
    work.registration = (rid, _sha(claim), expires, None, now)
    return work, rid, assertion


def v06_exchange(now: datetime, assertion: str, row: asyncpg.Record | None) -> Work:
    """V6: the assertion checked, a token for the registration `row` names."""
    claims = check(assertion)
    if row is None or row["status"] != "unclaimed" or row["expires_at"] <= now:
        raise RuntimeError("the registration does not exchange")
    rid = str(claims["sub"])
    cid = time_ordered_token("cred_")  # as service.crypto.tokens.new_credential_id
    secret = secrets.token_urlsafe(32)
    issued_at = int(now.timestamp())
    token = sign(
        "at+jwt",
        {"iss": ISSUER, "aud": ISSUER + "/api/", "sub": rid, "client_id": rid, "iat": issued_at,
         "exp": issued_at + 3600, "jti": secret, "scope": " ".join(SCOPES)},
    )  # fmt: skip
    expires = now + timedelta(hours=1)
    issued = _encode(
        {
            "type": "credential.issued",
            "credential_id": cid,
            "kind": "access_token",
            "token_hash": _sha(token),
            "scopes": SCOPES,
            "issued_via": "anonymous",
            "registration_id": rid,
            "expires_at": expires,
        }
    )
    metadata = _encode({"correlation_id": uuid.uuid4().hex, "actor": "agent", "door": "v06"})
    work = Work()
    work.events = [("credential", cid, "credential.issued", 2, issued, metadata, now)]
    work.credential = (cid, "access_token", _sha(token), SCOPES, rid, expires, now)
    work.checks = [rid]
    return work


async def commit(conn: Conn, batch: list[Work]) -> None:
    recorded = datetime.now(UTC)
    events = [e for w in batch for e in w.events]
    ids = [uuid.uuid4() for _ in events]
    rests = [
        framed_after_position(
            event_id=i, tenant_id="default", stream_type=st, stream_id=sid, stream_version=1,
            type=t, schema_version=v, occurred_at=at, recorded_at=recorded, payload=p,
            metadata=m,
        )
        for i, (st, sid, t, v, p, m, at) in zip(ids, events, strict=True)
    ]  # fmt: skip
    keys = [w.key for w in batch if w.key is not None]
    registrations = [w.registration for w in batch if w.registration is not None]
    credentials = [w.credential for w in batch if w.credential is not None]
    checks = [rid for w in batch for rid in w.checks]
    async with conn.transaction():
        if keys:
            await write_rows(conn, KEYS, keys)
        answer = await conn.fetchrow(
            APPEND, APPEND_LOCK, [], [], [], ids, ["default"] * len(events),
            [e[0] for e in events], [e[1] for e in events], [1] * len(events),
            [e[2] for e in events], [e[3] for e in events], [e[6] for e in events], recorded,
            [e[4].decode() for e in events], [e[5].decode() for e in events], rests,
        )  # fmt: skip
        if answer is None or answer["status"] != "appended":
            raise RuntimeError(f"events_append answered {answer}")
        if registrations:
            await write_rows(conn, REGISTRATIONS, registrations)
        if credentials:
            await write_rows(conn, CREDENTIALS, credentials)
        if checks and len(await conn.fetch(VERSIONS_UNDER_LOCK, checks)) != len(set(checks)):
            raise RuntimeError("a registration's stream is gone")
    for w in batch:
        w.done.set_result(None)


async def one(queue: asyncio.Queue[Work], work: Work) -> None:
    queue.put_nowait(work)
    await work.done


async def client(kind: str, pool: asyncpg.Pool, queue: asyncio.Queue[Work], until: float) -> int:
    count = 0
    while time.monotonic() < until:
        if kind == "v1":
            await one(queue, v1_registration(datetime.now(UTC)))
        else:
            work, rid, assertion = v06_identity(datetime.now(UTC))
            await one(queue, work)
            row = await pool.fetchrow(READ_REGISTRATION, rid)
            await one(queue, v06_exchange(datetime.now(UTC), assertion, row))
        count += 1
    return count


async def process_main(url: str, kind: str, clients: int, seconds: float) -> tuple[int, float]:
    pool = await asyncpg.create_pool(url, min_size=2, max_size=10)
    queue: asyncio.Queue[Work] = asyncio.Queue()
    task = asyncio.get_running_loop().create_task(writer(pool, queue, commit))
    cpu, until = time.process_time(), time.monotonic() + seconds
    counts = await asyncio.gather(*(client(kind, pool, queue, until) for _ in range(clients)))
    cpu = time.process_time() - cpu
    task.cancel()
    await pool.close()
    return sum(counts), cpu


def _child(url: str, kind: str, clients: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from service.runtime.processes import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        out.put(runner.run(process_main(url, kind, clients, seconds)))


def measure(url: str, kind: str, clients: int, processes: int, seconds: float) -> tuple[float, str]:
    """(per second, a table row) for `clients` onboarding `kind` for `seconds`."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    share = [clients // processes + (i < clients % processes) for i in range(processes)]
    children = [
        context.Process(target=_child, args=(url, kind, n, seconds, out)) for n in share if n
    ]
    postgres_before = postgres_cpu()
    # the writers' backends end with their pools, before a last look: follow them
    postgres_seen, stop = dict(postgres_before), threading.Event()
    watcher = threading.Thread(target=_follow_postgres, args=(postgres_seen, stop), daemon=True)
    watcher.start()
    for child in children:
        child.start()
    results = [out.get(timeout=seconds + 60) for _ in children]
    for child in children:
        child.join()
    stop.set()
    watcher.join()
    postgres = spent(postgres_before, postgres_seen)
    count = sum(r[0] for r in results)
    python = sum(r[1] for r in results)
    rate = count / seconds
    label = "v1 registration" if kind == "v1" else "v0.6 agent (V1 + V6)"
    return rate, (
        f"| {label} | {clients} | {rate:,.0f} | {python / count * 1000:.3f} "
        f"| {postgres / count * 1000:.3f} |"
    )


async def run(args: argparse.Namespace) -> int:
    name = f"authledger_bench_onboard_{secrets.token_hex(6)}"
    url = with_database(args.database_url, name)
    admin = await asyncpg.connect(args.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await migrate({**os.environ, "AUTHLEDGER_DATABASE_URL": url})
        writer_url = await runtime_login(admin, url)
        print(f"onboarding floor: {args.processes} processes, {args.seconds:g} s a run")
        print("| onboarding | clients | per second | Python CPU ms each | Postgres CPU ms each |")
        print("|---|---:|---:|---:|---:|")
        ratios: dict[int, list[float]] = {16: [], 64: []}
        for _ in range(args.rounds):
            for clients in (16, 64):
                rates = {}
                for kind in ("v1", "v06"):
                    rates[kind], line = await asyncio.to_thread(
                        measure, writer_url, kind, clients, args.processes, args.seconds
                    )
                    print(line, flush=True)
                ratios[clients].append(rates["v06"] / rates["v1"])
        for clients, found in ratios.items():
            shown = " · ".join(f"{r:.2f}" for r in found)
            print(f"v0.6 agents per v1 registration at {clients} clients: {shown}")
        conn = await asyncpg.connect(url)
        try:  # every agent and every registration: two events and one credential
            counts = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM events) AS events, "
                "(SELECT count(*) FROM credentials) AS credentials"
            )
        finally:
            await conn.close()
        if counts is None:
            raise RuntimeError("no counts")
        ok = counts["events"] == 2 * counts["credentials"]
        print(f"log: {counts['events']:,} events, {counts['credentials']:,} credentials: "
              + ("two events each" if ok else "NOT two events each"))  # fmt: skip
        return 0 if ok else 1
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_database_url(parser)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

"""The floors under a verified-email and an ID-JAG registration: only the unavoidable work.

    .venv/bin/python bench/identity_floor.py [--kind email|id_jag|both] [--seconds S]
                                             [--processes P] [--no-worker]
                                             [--database-url URL] [--as-superuser]

bench/registration_floor.py's floor for the two other kinds of E4 that issue 11 sets targets
for, through its writer (per process, group commit, one batch in flight, as events/writer.py
batches), its process and CPU accounting, its runtime-role login and its `authledger worker`;
no HTTP, no framework, no logging, no commands.

A verified-email registration (`assertion_type: verified_email`, service/commands/registration.py
`register_verified_email`) must: make its registration id, claim token, attempt id and link
token (CSPRNG) and the two tokens' SHA-256 hashes; two data keys wrapped under the
key-encryption key (the registration's, and the attempt's own, under which the address and
the client IP are sealed, so erasing the address takes the attempt alone); the address sealed
twice under the attempt's key (once for the event, once for the mail row) and its blind index
(HMAC); the client IP sealed; the link token sealed for the outbox under the key the mailer
derives from the same server secret; `registration.created` and `claim.attempt_started`
encoded and framed. Then, batched, one transaction: the subject keys (one statement), the
events through `events_append`, the `registrations` row (one statement; written at once in
the state both events leave it, where the server's projection inserts it and updates it),
the `attempt_addresses` row, the `mail_outbox` row (one statement each; every table's rows
of the batch in one execution, `unnest` of one array per column) and one NOTIFY for
the mailer per batch (as the server's outbox statement for a batch), COMMIT. The running
worker's mailer really opens and sends every mail, to an SMTP sink in this process, as
bench/write_path.py's worker does; it sends behind the writers, so after each run a second
line gives the mails the run left queued and the worker's and Postgres's CPU, per
registration of that run, until they are sent (--no-worker: no mail is sent at all).

An ID-JAG registration of a returning user (ES256; service/commands/identity.py
`register_id_jag`, `_delegate`) must: read the compact JWS (base64url, strict JSON: duplicate
members refused), check its header (`typ`, `alg`, `kid`); look up the unverified `iss` in the
trust list (a removal made by any replica applies to the next assertion, and no key is looked
at for an untrusted issuer) and, in the same query, the head of the delegation the unverified
`sub` names (the user it acts for and the stream's version for the expected-version check)
and that user's key row, as the server reads them since session 10 (two round trips before;
three when the server's process did not hold the key), one query for all the callers of a
moment, as the server sends it since session 16 (service/commands/coalesced.py); verify the ES256
signature with the provider's key (held in memory, as the server's JWKS cache holds it) and
judge the claims (`aud`, `exp`, `iat`, `sub`, `jti`, `client_id`, a verified email); only then
use the head.
Then: the api key (CSPRNG, SHA-256), the client IP sealed under the user's data key (held in
memory, as the server's Sealer holds it: loaded before the clock, and read again after 60 s
as the Sealer does), `delegation.used` on the delegation's stream at its next version and
`credential.issued`; batched, one transaction: the events through `events_append` with the
delegation streams' expected versions checked in it, the `credentials` rows, the
`delegations` rows updated (one statement each, as above), the `(iss, jti)` replay guard
rows in `seen_jtis` (one statement for the batch, pruning as the server does; a pair already
there rolls the batch back and the rest commits without it: the replay is refused), COMMIT.

Set-up, not measured: the provider (tests/support/idp.py, ES256) is trusted and its 1,000
subjects registered once through the service's own commands (`trust`, `register_id_jag`)
in-process, as the runtime role, so the users, keys, delegations and their rows are exactly
the server's; the ID-JAGs (a jti each, 300 s) are minted by each floor process before its
clock starts, every client going round its own share of the subjects (the deployed bench goes
round-robin over all of them; with 1,000 subjects and at most 64 requests at once, neither
sends two requests for one subject at the same time).

The crypto is the server's own pure code (service/crypto: `Sealer.fresh`, `blind_index`,
`encrypt`, the token makers; the server secret is the worker's, so what is sealed opens there);
the events are the server's event types, encoded as the store encodes them.

P processes (default 2) each run C/P clients for S seconds at C = 1, 16 and 64, per kind;
printed as registration_floor.py prints: registrations/s, p50/p99 and the CPU per
registration of these processes, the worker, Postgres and the rest of the machine. At the
end: the log holds every registration (events, rows, outbox rows and replay-guard rows
counted), a replayed ID-JAG is refused, the hash chain verifies, and, with the worker, every
event is on JetStream and every mail sent.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from process_use import cpu_of, postgres_cpu, spent
from registration_floor import (
    APPEND,
    KEYS,
    TABLE_HEAD,
    admin_head,
    chain_verifies,
    floor_arguments,
    measure,
    published,
    write_rows,
    writer,
)
from scratch_database import with_database
from served import migrate
from smtp_sink import SmtpSink
from write_path import drop_stream, runtime_login, stack_env, start_worker, stop_worker

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from events.appends import APPEND_LOCK  # noqa: E402
from events.catalogue import Event  # noqa: E402
from events.credential import CredentialIssued  # noqa: E402
from events.delegation import DelegationUsed  # noqa: E402
from events.envelope import Metadata  # noqa: E402
from events.hashchain import framed_after_position  # noqa: E402
from events.ids import new_event_id  # noqa: E402
from events.registration import ClaimAttemptStarted, RegistrationCreated  # noqa: E402
from events.rows import ColumnForm  # noqa: E402
from events.sql import Conn, load_queries  # noqa: E402
from service.commands.trust_list import trust_reads  # noqa: E402
from service.crypto.pii import Sealer, encrypt  # noqa: E402
from service.crypto.secret_keys import load_server_keys  # noqa: E402
from service.crypto.tokens import (  # noqa: E402
    derive_key,
    new_api_key,
    new_attempt_id,
    new_attempt_token,
    new_claim_token,
    new_credential_id,
    new_registration_id,
    registration_id_for_identity,
    token_hash,
)
from service.domain.trust_list import delegation_id_for  # noqa: E402
from service.mail.outbox import CHANNEL, MAIL_OUTBOX_KEY  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.tenancy.config import TenantConfig  # noqa: E402

_encode = msgspec.json.Encoder().encode
TENANT = "default"
CLIENT_IP = "127.0.0.1"
ISSUER = "https://idp.floor.example"  # the test provider's `iss`; its keys are in memory
SUBJECTS = 1_000  # returning users, as bench/returning_agents.py
TOKEN_LIFETIME = 300  # seconds, as the deployed bench mints them
TOKENS_PER_SECOND = 2_500  # per process, minted before the clock: more than it can register
KEY_MAX_AGE = 60.0  # seconds a data key is used from memory (service/crypto/pii.py Sealer)
PRUNE_BATCH = 100  # expired replay-guard rows pruned per registration (service/commands/jti.py)
SKEW = timedelta(seconds=60)  # service/providers/trust.py SKEW_SECONDS
ID_JAG_TYPE = "oauth-id-jag+jwt"
V1 = ("v1", "0.1.0")  # the door and dialect of /agent/auth (service/http/bodies.py)
# One event: stream type, stream id, stream version, the event, metadata (encoded), when.
Planned = tuple[str, str, int, Event, bytes, datetime]

# Each table's rows of a batch in one execution (events.rows.ColumnForm): one array a column.
EMAIL_REGISTRATIONS = ColumnForm(
    "INSERT INTO registrations (registration_id, tenant_id, kind, status, "
    "requested_credential_type, claim_token_hash, expires_at, credential_id, version, "
    "created_at, updated_at, dialect, attempt_id, attempt_status, attempt_token_hash, "
    "link_expires_at, email_index) SELECT r, 'default', 'verified_email', 'pending_claim', "
    "'api_key', h, e, NULL, 2, c, c, 'v1', a, 'initiated', th, le, ei FROM unnest($1::text[], "
    "$2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[], "
    "$7::timestamptz[], $8::text[]) AS u (r, h, e, c, a, th, le, ei)"
)
ADDRESSES = ColumnForm(
    "INSERT INTO attempt_addresses (registration_id, attempt_id, tenant_id, email_index, "
    "subject_id, started_at) SELECT r, a, 'default', ei, a, s FROM unnest($1::text[], "
    "$2::text[], $3::text[], $4::timestamptz[]) AS u (r, a, ei, s)"
)
MAILS = ColumnForm(
    "INSERT INTO mail_outbox (attempt_id, tenant_id, registration_id, recipient_sealed, "
    "link_token_sealed, link_expires_at, created_at, status, tries, next_try_at) "
    "SELECT a, 'default', r, rs, lt, le, c, 'pending', 0, c FROM unnest($1::text[], "
    "$2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::timestamptz[]) "
    "AS u (a, r, rs, lt, le, c)"
)
NOTIFY_MAIL = "SELECT pg_notify($1, $2)"
ID_JAG_CREDENTIALS = ColumnForm(  # projections/credentials.sql `issued_rows`
    "INSERT INTO credentials (credential_id, tenant_id, kind, token_hash, scopes, issued_via, "
    "registration_id, user_id, status, expires_at, issued_at, version, issuer, delegation_id) "
    "SELECT c, 'default', 'api_key', h, string_to_array(s, ' '), 'id_jag', r, u, 'active', "
    "NULL, t, 1, i, d FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::timestamptz[], $7::text[], $8::text[]) AS x (c, h, s, r, u, t, i, d)",
    joined=(2,),
)
# projections/delegations.sql `used_rows`: each returning user's delegation once a batch
DELEGATIONS_USED = ColumnForm(load_queries("projections", "delegations.sql")["used_rows"])
REMEMBER_JTIS = """
WITH pruned AS (
    DELETE FROM seen_jtis
    WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM seen_jtis WHERE keep_until < $5 ORDER BY keep_until LIMIT $6
    ))
)
INSERT INTO seen_jtis (tenant_id, issuer, jti, keep_until)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
ON CONFLICT DO NOTHING
RETURNING jti
"""  # service/commands/providers.sql `remember_jti`, for a whole batch
USER_KEYS = "SELECT subject_id, wrapped_key FROM subject_keys WHERE subject_id = ANY($1::text[])"


def tenant_config(secret: str) -> TenantConfig:
    """The default tenant `serve` has with the bench's environment (no PUBLIC_URL)."""
    return TenantConfig.from_settings(Settings(database_url="", nats_url="", secret_key=secret))


async def append(conn: Conn, events: list[Planned], checks: list[tuple[str, int]]) -> str:
    """`events_append` for a batch's events; `checks`: (stream id, expected version) of the
    streams that exist already. The function's status ('appended', 'conflict', ...)."""
    recorded = datetime.now(UTC)
    ids = [new_event_id() for _ in events]  # UUIDv7, as the server's
    payloads = [_encode(e[3]) for e in events]
    kinds = [type(e[3]) for e in events]
    types = [str(k.__struct_config__.tag) for k in kinds]
    versions = [k.schema_version for k in kinds]
    rests = [
        framed_after_position(
            event_id=i, tenant_id=TENANT, stream_type=st, stream_id=sid, stream_version=v,
            type=t, schema_version=sv, occurred_at=at, recorded_at=recorded, payload=p,
            metadata=m,
        )
        for i, (st, sid, v, _, m, at), t, sv, p in zip(ids, events, types, versions, payloads,
                                                   strict=True)
    ]  # fmt: skip
    answer = await conn.fetchrow(
        APPEND, APPEND_LOCK, [TENANT] * len(checks), [c[0] for c in checks],
        [c[1] for c in checks], ids, [TENANT] * len(events), [e[0] for e in events],
        [e[1] for e in events], [e[2] for e in events], types, versions, [e[5] for e in events],
        recorded, [p.decode() for p in payloads], [e[4].decode() for e in events], rests,
    )  # fmt: skip
    return "no answer" if answer is None else str(answer["status"])


# -- verified email ------------------------------------------------------------------------


class EmailRegistration:
    """One verified-email registration's unavoidable work before the database."""

    __slots__ = ("done", "events", "keys", "mail", "rows")

    def __init__(self, sealer: Sealer, tenant: TenantConfig, link_aead: AESGCM) -> None:
        now = datetime.now(UTC)
        rid, claim = new_registration_id(), new_claim_token()
        attempt_id, link = new_attempt_id(), new_attempt_token()
        email = f"agent-{secrets.token_hex(6)}@example.net"
        expires = now + timedelta(seconds=tenant.registration_ttl)
        link_expires = now + timedelta(seconds=tenant.claim_link_ttl)
        subject, attempt = sealer.fresh(rid), sealer.fresh(attempt_id)
        index = sealer.blind_index(email)
        created = RegistrationCreated(
            registration_id=rid, kind="verified_email", requested_credential_type="api_key",
            claim_token_hash=token_hash(claim), expires_at=expires, pre_claim_scopes=(),
            post_claim_scopes=tenant.post_claim_scopes,
        )  # fmt: skip
        link_hash = token_hash(link)
        started = ClaimAttemptStarted(
            attempt_id=attempt_id, attempt_token_hash=link_hash, email_sealed=attempt.seal(email),
            email_index=index, link_expires_at=link_expires,
        )  # fmt: skip
        metadata = _encode(
            Metadata(
                correlation_id=uuid.uuid4().hex, actor="agent", client_ip=attempt.seal(CLIENT_IP),
                door=V1[0], dialect=V1[1],
            )
        )  # fmt: skip
        self.events: list[Planned] = [
            ("registration", rid, 1, created, metadata, now),
            ("registration", rid, 2, started, metadata, now),
        ]
        self.keys = [subject.write[1], attempt.write[1]]
        self.rows = (
            (rid, created.claim_token_hash, expires, now, attempt_id, link_hash, link_expires,
             index),
            (rid, attempt_id, index, now),
        )  # fmt: skip
        nonce = os.urandom(12)  # service/mail/outbox.py seal_link_token, its key derived once
        sealed_link = nonce + link_aead.encrypt(nonce, link.encode(), attempt_id.encode())
        self.mail = (attempt_id, rid, attempt.seal(email), sealed_link, link_expires, now)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


def appended(status: str) -> None:
    if status != "appended":
        raise RuntimeError(f"events_append answered {status}")


async def commit_email(conn: Conn, batch: list[EmailRegistration]) -> None:
    try:
        async with conn.transaction():
            await write_rows(conn, KEYS, [k for r in batch for k in r.keys])
            appended(await append(conn, [e for r in batch for e in r.events], []))
            await write_rows(conn, EMAIL_REGISTRATIONS, [r.rows[0] for r in batch])
            await write_rows(conn, ADDRESSES, [r.rows[1] for r in batch])
            await write_rows(conn, MAILS, [r.mail for r in batch])
            await conn.execute(NOTIFY_MAIL, CHANNEL, batch[-1].mail[0])
    except Exception as exc:
        for r in batch:
            r.done.set_exception(exc)
        return
    for r in batch:
        r.done.set_result(None)


async def email_client(
    queue: asyncio.Queue[EmailRegistration], until: float, latencies: list[float], *,
    sealer: Sealer, tenant: TenantConfig, link_aead: AESGCM,
) -> int:  # fmt: skip
    count = 0
    while time.monotonic() < until:
        started = time.perf_counter()
        registration = EmailRegistration(sealer, tenant, link_aead)
        queue.put_nowait(registration)
        await registration.done
        latencies.append(time.perf_counter() - started)
        count += 1
    return count


async def email_main(
    url: str, clients: int, seconds: float, secret: str
) -> tuple[int, list[float], float, float]:
    set_up = time.process_time()
    pool = await asyncpg.create_pool(url, min_size=2, max_size=10)
    sealer = Sealer(await load_server_keys(pool, secret))  # as `serve` loads its keys
    tenant = tenant_config(secret)
    link_aead = AESGCM(derive_key(secret, MAIL_OUTBOX_KEY))
    queue: asyncio.Queue[EmailRegistration] = asyncio.Queue()
    task = asyncio.get_running_loop().create_task(writer(pool, queue, commit_email))
    latencies: list[float] = []
    cpu = time.process_time()
    set_up = cpu - set_up
    until = time.monotonic() + seconds
    counts = await asyncio.gather(
        *(
            email_client(queue, until, latencies, sealer=sealer, tenant=tenant, link_aead=link_aead)
            for _ in range(clients)
        )
    )
    cpu = time.process_time() - cpu
    task.cancel()
    await pool.close()
    return sum(counts), latencies, cpu, set_up


def email_child(url: str, clients: int, seconds: float, out: Any, secret: str) -> None:
    from service.runtime.processes import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        out.put(runner.run(email_main(url, clients, seconds, secret)))


# -- ID-JAG, a returning user --------------------------------------------------------------


class Refused(Exception):
    """An ID-JAG the checks refuse (the server answers 4xx)."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise Refused("duplicate member")
    return members


def _json(segment: str) -> dict[str, Any]:
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    value = json.loads(raw, object_pairs_hook=_unique)
    if not isinstance(value, dict):
        raise Refused("not a JSON object")
    return value


class UserKeys:
    """The users' data keys in memory, as the server's Sealer keeps them: each read again
    (one query) once it is older than KEY_MAX_AGE."""

    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer
        self.keys: dict[str, tuple[bytes, float]] = {}

    async def load(self, pool: asyncpg.Pool, user_ids: list[str]) -> None:
        for row in await pool.fetch(USER_KEYS, user_ids):
            subject = row["subject_id"]
            key = self.sealer.unwrap_data_key(subject, row["wrapped_key"])
            self.keys[subject] = (key, time.monotonic())

    async def seal(self, pool: asyncpg.Pool, user_id: str, value: str) -> str:
        held = self.keys.get(user_id)
        if held is None or time.monotonic() - held[1] >= KEY_MAX_AGE:
            await self.load(pool, [user_id])
            held = self.keys[user_id]
        return encrypt(held[0], user_id, value)


class IdJagRegistration:
    """One returning user's ID-JAG registration, checked, before the database."""

    __slots__ = ("check", "credential", "delegation", "done", "events", "jti", "now")

    def __init__(
        self, claims: dict[str, Any], head: Mapping[str, Any], *, sealed_ip: str, did: str,
        tenant: TenantConfig, now: datetime,
    ) -> None:  # fmt: skip
        self.now = now
        iss, sub, jti = claims["iss"], claims["sub"], claims["jti"]
        rid = registration_id_for_identity(iss, sub, tenant.issuer)
        user_id, version = str(head["user_id"]), int(head["version"])
        cid, api_key = new_credential_id(), new_api_key(tenant.api_key_prefix)
        metadata = _encode(
            Metadata(correlation_id=uuid.uuid4().hex, actor="agent", client_ip=sealed_ip,
                     door=V1[0], dialect=V1[1])
        )  # fmt: skip
        used = DelegationUsed(
            credential_id=cid, jti=jti, client_id=claims["client_id"],
            agent_platform=claims.get("agent_platform"),
            agent_context_id=claims.get("agent_context_id"),
        )  # fmt: skip
        issued = CredentialIssued(
            credential_id=cid, kind="api_key", token_hash=token_hash(api_key),
            scopes=tenant.scopes_supported, issued_via="id_jag", registration_id=rid,
            user_id=user_id, issuer=iss, delegation_id=did,
        )  # fmt: skip
        self.events: list[Planned] = [
            ("delegation", did, version + 1, used, metadata, now),
            ("credential", cid, 1, issued, metadata, now),
        ]
        self.check = (did, version)
        self.credential = (cid, issued.token_hash, list(issued.scopes), rid, user_id, now, iss, did)
        self.delegation = (did, now, version + 1)
        remember_until = datetime.fromtimestamp(claims["exp"], UTC) + SKEW
        self.jti = (iss, jti, remember_until)
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()


class Replayed(Exception):
    def __init__(self, jtis: set[str]) -> None:
        super().__init__(f"replayed jti: {sorted(jtis)}")
        self.jtis = jtis


async def _commit_id_jags(conn: Conn, batch: list[IdJagRegistration]) -> None:
    now = batch[0].now
    async with conn.transaction():
        events = [e for r in batch for e in r.events]
        appended(await append(conn, events, [r.check for r in batch]))
        await write_rows(conn, ID_JAG_CREDENTIALS, [r.credential for r in batch])
        await write_rows(conn, DELEGATIONS_USED, [r.delegation for r in batch])
        kept = await conn.fetch(
            REMEMBER_JTIS, [TENANT] * len(batch), [r.jti[0] for r in batch],
            [r.jti[1] for r in batch], [r.jti[2] for r in batch], now, PRUNE_BATCH * len(batch),
        )  # fmt: skip
        if len(kept) != len(batch):
            raise Replayed({r.jti[1] for r in batch} - {k["jti"] for k in kept})


async def commit_id_jag(conn: Conn, batch: list[IdJagRegistration]) -> None:
    """The batch in one transaction; a replayed jti rolls it back and the rest commits again
    without it (the server refuses that request alone)."""
    while batch:
        try:
            await _commit_id_jags(conn, batch)
        except Replayed as replayed:
            for r in batch:
                if r.jti[1] in replayed.jtis:
                    r.done.set_exception(Refused("replay_detected"))
            batch = [r for r in batch if not r.done.done()]
            continue
        except Exception as exc:
            for r in batch:
                r.done.set_exception(exc)
            return
        for r in batch:
            r.done.set_result(r.events[1][1])
        return


class IdJagFloor:
    """One process's ID-JAG checks: the trust list and the delegations read per request,
    the provider's public key and the users' data keys held in memory."""

    def __init__(
        self, pool: asyncpg.Pool, queue: asyncio.Queue[IdJagRegistration], *,
        tenant: TenantConfig, public_pem: bytes, kid: str, user_keys: UserKeys,
    ) -> None:  # fmt: skip
        self.pool, self.tenant, self.user_keys, self.queue = pool, tenant, user_keys, queue
        key = serialization.load_pem_public_key(public_pem)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise TypeError("the provider's key is no EC key")
        self.keys = {kid: key}  # the JWKS cache's entry
        # The server's own read (its key columns unused here: UserKeys holds every user's key,
        # as the server's Sealer holds those it has read), sent as the server sends it: once
        # for the callers of a moment (service/commands/coalesced.py).
        self.lookups = trust_reads(pool)

    async def register(self, token: str) -> str:
        """A returning user's registration: the credential id, once committed."""
        now = datetime.now(UTC)
        if len(token) > 8 * 1024:
            raise Refused("too big")
        head_b64, body_b64, signature_b64 = token.split(".")
        header, claims = _json(head_b64), _json(body_b64)
        if header.get("typ") != ID_JAG_TYPE or "crit" in header:
            raise Refused("invalid_request")
        alg, kid, iss, sub = (
            header.get("alg"),
            header.get("kid"),
            claims.get("iss"),
            claims.get("sub"),
        )
        if not isinstance(kid, str) or not isinstance(iss, str) or not isinstance(sub, str):
            raise Refused("invalid_request")
        did = delegation_id_for(iss, sub, self.tenant.issuer)
        # trusted? and the head of the delegation the unverified sub names (one query)
        entry = await self.lookups.get((TENANT, iss, did))
        if entry is None:
            raise Refused("invalid_issuer")
        if alg != "ES256" or alg not in entry["algorithms"] or kid not in self.keys:
            raise Refused("invalid_signature")
        raw = base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4))
        if len(raw) != 64:
            raise Refused("invalid_signature")
        signature = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
        try:
            self.keys[kid].verify(signature, f"{head_b64}.{body_b64}".encode(), ec.ECDSA(SHA256()))
        except InvalidSignature:
            raise Refused("invalid_signature") from None
        self._judge(claims, entry, now)
        if entry["head_user_id"] is None:
            raise RuntimeError("not a returning user: the set-up registers every subject")
        head = {"user_id": entry["head_user_id"], "version": entry["head_version"]}
        sealed_ip = await self.user_keys.seal(self.pool, str(head["user_id"]), CLIENT_IP)
        registration = IdJagRegistration(
            claims, head, sealed_ip=sealed_ip, did=did, tenant=self.tenant, now=now
        )
        self.queue.put_nowait(registration)
        return await registration.done

    def _judge(self, claims: dict[str, Any], entry: asyncpg.Record, now: datetime) -> None:
        """service/providers/claims.py `check_id_jag`'s checks, for this provider's tokens."""
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(a, str) and a.rstrip("/") == self.tenant.issuer for a in audiences):
            raise Refused("invalid_audience")
        exp, iat, current = claims.get("exp"), claims.get("iat"), now.timestamp()
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise Refused("invalid_request")
        if exp <= current - SKEW.total_seconds():
            raise Refused("expired")
        if iat > current + SKEW.total_seconds() or exp - iat > 600:
            raise Refused("invalid_request")
        for name in ("sub", "jti"):
            value = claims.get(name)
            if not isinstance(value, str) or not value or "\x00" in value:
                raise Refused("invalid_request")
        client_id = claims.get("client_id")
        if client_id != entry["issuer"] and client_id not in entry["client_ids"]:
            raise Refused("invalid_client_id")
        if claims.get("email_verified") is not True or not isinstance(claims.get("email"), str):
            raise Refused("missing_verified_email")
        if not set(entry["required_amr"]) <= set(claims.get("amr") or ()):
            raise Refused("insufficient_user_authentication")


def mint(private_pem: bytes, kid: str, audience: str, subjects: list[int], count: int) -> list[str]:
    """`count` ID-JAGs round-robin over `subjects` (tests/support/idp.py's claims, ES256)."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the provider's key is no EC key")
    from tests.support.idp import ProviderKey, b64url, compact

    signer = ProviderKey("ES256", key, {"kid": kid})
    header = {"typ": ID_JAG_TYPE, "alg": "ES256", "kid": kid}
    issued = int(time.time())
    tokens = []
    for i in range(count):
        sub = f"es256-agent-{subjects[i % len(subjects)]:04d}"
        claims = {
            "iss": ISSUER, "sub": sub, "aud": audience, "client_id": ISSUER,
            "jti": str(uuid.uuid4()), "iat": issued, "exp": issued + TOKEN_LIFETIME,
            "email": f"{sub}@example.net", "email_verified": True,
        }  # fmt: skip
        unsigned = compact(header, claims, b"").rstrip(".")
        tokens.append(f"{unsigned}.{b64url(signer.sign(unsigned.encode()))}")
    return tokens


async def id_jag_client(floor: IdJagFloor, tokens: Iterator[str], latencies: list[float]) -> int:
    count = 0
    for token in tokens:
        started = time.perf_counter()
        await floor.register(token)
        latencies.append(time.perf_counter() - started)
        count += 1
    return count


async def id_jag_main(
    url: str, clients: int, seconds: float, *, secret: str, provider: tuple[bytes, bytes, str],
    first: int, total: int,
) -> tuple[int, list[float], float, float]:  # fmt: skip
    """`clients` clients, numbered from `first` of `total` in all, each going round its share
    of the subjects with tokens minted before the clock."""
    set_up = time.process_time()
    private_pem, public_pem, kid = provider
    tenant = tenant_config(secret)
    budget = int(TOKENS_PER_SECOND * seconds / clients) + 1
    shares = [
        mint(private_pem, kid, tenant.issuer, list(range(first + c, SUBJECTS, total)), budget)
        for c in range(clients)
    ]
    pool = await asyncpg.create_pool(url, min_size=2, max_size=10)
    user_keys = UserKeys(Sealer(await load_server_keys(pool, secret)))
    await user_keys.load(
        pool, [r["user_id"] for r in await pool.fetch("SELECT user_id FROM delegations")]
    )
    queue: asyncio.Queue[IdJagRegistration] = asyncio.Queue()
    task = asyncio.get_running_loop().create_task(writer(pool, queue, commit_id_jag))
    floor = IdJagFloor(
        pool, queue, tenant=tenant, public_pem=public_pem, kid=kid, user_keys=user_keys
    )
    latencies: list[float] = []
    cpu = time.process_time()
    set_up = cpu - set_up
    until = time.monotonic() + seconds
    counts = await asyncio.gather(
        *(id_jag_client(floor, _until(share, until), latencies) for share in shares)
    )
    cpu = time.process_time() - cpu
    task.cancel()
    await pool.close()
    if any(n == len(share) for n, share in zip(counts, shares, strict=True)):
        print("warning: a client's tokens ran out before the clock", file=sys.stderr)
    return sum(counts), latencies, cpu, set_up


def _until(tokens: list[str], until: float) -> Iterator[str]:
    for token in tokens:
        if time.monotonic() >= until:
            return
        yield token


def id_jag_child(  # noqa: PLR0917 - measure()'s target: positional, as Process passes them
    url: str, clients: int, seconds: float, out: Any, secret: str,
    provider: tuple[bytes, bytes, str], first: int, total: int,
) -> None:  # fmt: skip
    from service.runtime.processes import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        out.put(
            runner.run(
                id_jag_main(
                    url,
                    clients,
                    seconds,
                    secret=secret,
                    provider=provider,
                    first=first,
                    total=total,
                )
            )
        )


# -- set-up, checks, the runs --------------------------------------------------------------


async def set_up_id_jag(url: str, secret: str) -> tuple[bytes, bytes, str]:
    """Trust the test provider and register its SUBJECTS once, through the service's own
    commands in this process (not measured); (private PEM, public PEM, kid) of its key."""
    from events.clock import SystemClock
    from events.store import EventStore
    from service.commands.context import Caller, Context
    from service.commands.identity import register_id_jag
    from service.commands.trust_list import trust
    from service.crypto.signing import KeyRing
    from service.providers.jwks import JwksCache
    from service.providers.trust import TrustedIssuer
    from tests.support.idp import IdentityProvider, PublishedKeys

    idp = IdentityProvider(alg="ES256", issuer=ISSUER)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=10)
    store = EventStore(pool)
    try:
        tenant = tenant_config(secret)
        ctx = Context(
            store=store, tenant=tenant, sealer=Sealer(await load_server_keys(pool, secret)),
            secret_key=secret, clock=SystemClock(), keyring=KeyRing(secret),
            provider_keys=cast("JwksCache", PublishedKeys(idp)),  # the keys in memory
        )  # fmt: skip
        entry = TrustedIssuer(issuer=ISSUER, algorithms=("ES256",))
        await trust(ctx, entry, Caller(actor="cli:bench"))
        slots = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with slots:
                now = datetime.now(UTC)
                token = idp.mint_id_jag(aud=tenant.issuer, now=now, sub=f"es256-agent-{i:04d}")
                caller = Caller(uuid.uuid4().hex, CLIENT_IP, door=V1[0], dialect=V1[1])
                await register_id_jag(ctx, token, "api_key", caller)

        await asyncio.gather(*(one(i) for i in range(SUBJECTS)))
    finally:
        await store.close()
        await pool.close()
    key = idp.signing_key
    private_pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, key.public_pem, key.kid


async def replay_refused(url: str, secret: str, provider: tuple[bytes, bytes, str]) -> bool:
    """One token through the floor twice: the first registers, the second is refused."""
    private_pem, public_pem, kid = provider
    tenant = tenant_config(secret)
    (token,) = mint(private_pem, kid, tenant.issuer, [0], 1)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    queue: asyncio.Queue[IdJagRegistration] = asyncio.Queue()
    task = asyncio.get_running_loop().create_task(writer(pool, queue, commit_id_jag))
    try:
        user_keys = UserKeys(Sealer(await load_server_keys(pool, secret)))
        floor = IdJagFloor(
            pool, queue, tenant=tenant, public_pem=public_pem, kid=kid, user_keys=user_keys
        )
        await floor.register(token)
        try:
            await floor.register(token)
        except Refused:
            return True
        return False
    finally:
        task.cancel()
        await pool.close()


async def mail_backlog(
    url: str, worker: int, queued_before: int, run_seconds: float
) -> tuple[str, int]:
    """After an email run: the mails still queued, the registrations per second counted
    until the last of their mails was sent (the run and its drain: write_path.py's (e)
    prints the same, as the floor's writers leave most of the mail to after the run and
    ours little), and the worker's and Postgres's CPU per registration of the run while
    the mailer sends them (a table line; the outbox's rows now)."""
    started, worker_before, postgres_before = time.monotonic(), cpu_of(worker), postgres_cpu()
    pending = await _count(url, "SELECT count(*) FROM mail_outbox WHERE status = 'pending'")
    # until the outbox is empty (3 min at most), so the next run does not share the machine
    # with this one's mail (a c=64 backlog took more than the minute once allowed here)
    sent, queued = await mails_sent(url, within=180.0)
    seconds = time.monotonic() - started
    worker_cpu = (cpu_of(worker) or 0.0) - (worker_before or 0.0)
    postgres = spent(postgres_before, postgres_cpu())
    run = max(queued - queued_before, 1)
    after = (
        f"all sent {seconds:.1f} s later: {run / (run_seconds + seconds):,.0f}/s with their mails"
        if sent >= queued
        else f"{queued - sent:,} NOT sent {seconds:.1f} s later"
    )
    return (
        f"| + mail after the run | {pending:,} of {run:,} left queued | {after} "
        f"| | | {worker_cpu / run * 1000:.3f} "
        f"| {postgres / run * 1000:.3f} | |"
    ), queued


async def _count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def mails_sent(url: str, within: float = 30.0) -> tuple[int, int]:
    """(sent, queued) in the outbox, once every mail is sent or `within` seconds passed."""
    conn = await asyncpg.connect(url)
    try:
        started = time.monotonic()
        while True:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'sent') AS sent, count(*) AS queued "
                "FROM mail_outbox"
            )
            if row is None:
                raise RuntimeError("no counts")
            if row["sent"] >= row["queued"] or time.monotonic() - started > within:
                return int(row["sent"]), int(row["queued"])
            # as write_path.py waits: this count reads the whole outbox (10 ms at 35,000
            # rows), ten times a second was a tenth of a core of Postgres during the drain
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


CHECKS = """
SELECT
  (SELECT count(*) FROM registrations WHERE kind = 'verified_email') AS email_registrations,
  (SELECT count(*) FROM events WHERE type = 'claim.attempt_started') AS attempts,
  (SELECT count(*) FROM events e WHERE type = 'registration.created'
     AND payload::jsonb ->> 'kind' = 'verified_email') AS email_created,
  (SELECT count(*) FROM attempt_addresses) AS addresses,
  (SELECT count(*) FROM mail_outbox) AS mails,
  (SELECT count(*) FROM credentials WHERE issued_via = 'id_jag') AS id_jag_credentials,
  (SELECT count(*) FROM events WHERE type = 'credential.issued'
     AND payload::jsonb ->> 'issued_via' = 'id_jag') AS id_jag_issued,
  (SELECT count(*) FROM events WHERE type = 'delegation.used') AS used,
  (SELECT coalesce(sum(uses), 0) FROM delegations) AS uses,
  (SELECT count(*) FROM seen_jtis) AS jtis,
  (SELECT count(*) FROM events) AS events
"""


async def check_log(url: str) -> bool:
    """Every registration whole in the log and its rows; prints what it counted."""
    conn = await asyncpg.connect(url)
    try:
        c = await conn.fetchrow(CHECKS)
    finally:
        await conn.close()
    if c is None:
        raise RuntimeError("no counts")
    email = c["email_registrations"]
    email_ok = email == c["attempts"] == c["email_created"] == c["addresses"] == c["mails"]
    id_jag = c["id_jag_credentials"]
    id_jag_ok = id_jag == c["id_jag_issued"] == c["used"] == c["uses"] == c["jtis"]
    print(
        f"log: {c['events']:,} events; {email:,} verified-email registrations, each with its "
        f"two events, address row and outbox row: {email_ok}; {id_jag:,} ID-JAG credentials "
        f"(set-up included), each with its delegation.used, use and replay-guard row: "
        f"{id_jag_ok}"
    )
    return bool(email_ok and id_jag_ok)


async def run(args: argparse.Namespace) -> int:  # noqa: PLR0912, PLR0915 - one run, in order
    name = f"authledger_bench_identity_{secrets.token_hex(6)}"
    url = with_database(args.database_url, name)
    suffix = secrets.token_hex(4)
    admin = await asyncpg.connect(args.database_url)
    smtp = None if args.no_worker else SmtpSink()
    env: dict[str, str] = {}
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await migrate({**os.environ, "AUTHLEDGER_DATABASE_URL": url})
        writes = url if args.as_superuser else await runtime_login(admin, url)
        role = "the admin URL's user" if args.as_superuser else "a member of the runtime role"
        print(f"identity floor: {args.processes} processes, {args.seconds:g} s a run, as {role}")
        if smtp is not None:
            smtp.start()
        env = stack_env(writes, suffix, smtp_port=smtp.port if smtp is not None else 9)
        secret = env["AUTHLEDGER_SECRET_KEY"]
        worker = None if args.no_worker else start_worker(env, Path(os.devnull))
        if worker is not None:
            print("with `authledger worker`: the log on JetStream, the mails sent to an SMTP sink")
        kinds = ["email", "id_jag"] if args.kind == "both" else [args.kind]
        ok, lag, sent = True, None, (0, 0)
        target: Callable[..., None]
        extra: tuple[object, ...]
        try:
            for kind in kinds:
                if kind == "email":
                    print("\nverified-email registration (api_key), the mail queued in the commit")
                    target, extra, numbered = email_child, (secret,), False
                else:
                    started = time.monotonic()
                    provider = await set_up_id_jag(writes, secret)
                    print(
                        f"\nID-JAG registration of a returning user (ES256, api_key); set-up: "
                        f"{SUBJECTS:,} subjects registered in {time.monotonic() - started:.1f} s"
                    )
                    target, extra, numbered = id_jag_child, (secret, provider), True
                    if worker is not None:  # the set-up's events relayed before the clock
                        await published(env["AUTHLEDGER_NATS_STREAM"], await admin_head(url))
                print(TABLE_HEAD)
                queued = 0
                for connections in (1, 16, 64):
                    line = await asyncio.to_thread(
                        measure, writes, connections, args.processes, args.seconds,
                        worker.pid if worker is not None else None,
                        target=target, extra=extra, numbered=numbered,
                    )  # fmt: skip
                    print(line, flush=True)
                    if kind == "email" and worker is not None:
                        backlog, queued = await mail_backlog(url, worker.pid, queued, args.seconds)
                        print(backlog, flush=True)
                if kind == "id_jag":
                    refused = await replay_refused(writes, secret, provider)
                    print(f"a replayed ID-JAG is refused: {refused}")
                    ok = ok and refused
            if worker is not None:
                head = await admin_head(url)
                lag = await published(env["AUTHLEDGER_NATS_STREAM"], head)
                print(
                    f"JetStream: every one of {head:,} events "
                    + (f"published {lag:.2f} s after the last run" if lag is not None
                       else "NOT published")
                )  # fmt: skip
                if "email" in kinds:
                    sent = await mails_sent(url)
                    print(f"mail: {sent[0]:,} of {sent[1]:,} queued mails sent")
            if worker is not None and worker.poll() is not None:
                print(f"`authledger worker` ended during the runs (exit {worker.returncode})")
                ok = False
        finally:
            if worker is not None:
                stop_worker(worker)
        verifies = await chain_verifies(url)
        print(f"chain verifies: {verifies}")
        ok = ok and verifies and await check_log(url)
        ok = ok and (args.no_worker or (lag is not None and sent[0] == sent[1]))
        return 0 if ok else 1
    finally:
        if smtp is not None:
            smtp.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        if env:
            await drop_stream(env["AUTHLEDGER_NATS_STREAM"])


def main() -> int:
    parser = floor_arguments(
        __doc__.splitlines()[0] if __doc__ else None,
        "without `authledger worker` (no JetStream publication, no mail sent)",
    )
    parser.add_argument("--kind", choices=("email", "id_jag", "both"), default="both")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

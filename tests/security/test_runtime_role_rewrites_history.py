"""Attack (issue 12, finding 3, the roles half): whoever has the service's database password
rewrites history. Migrations and the service used one role that owned `events`, so that
connection could disable the immutability triggers and edit or delete events (recomputing
the unkeyed chain), delete checkpoints with the tail, or insert a credentials row that logs
in with no event behind it.

Now `serve` and `worker` connect as the runtime role (migrations/privileges.sql): it owns
nothing, may only read and append the log and the signed checkpoints, and the read models
logins are decided from take a row only with its event behind it (migrations/guards.sql).
Every rewrite below is tried through `database_url`, the connection every serve and worker
of the suite uses, and each is refused; the logins are tried against the running app.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from events.clock import ManualClock
from events.hashchain import verify_log
from events.ledger import LEDGER
from events.store import EventStore, StreamAppend
from service.audit.signing_round import sign_now
from service.commands.access import grant_access, revoke_access
from service.commands.context import Caller, Context
from service.commands.credentials import mint
from service.commands.registration import Registered, register_anonymous
from service.commands.revocation import revoke
from service.crypto.tokens import token_hash
from tests.support.app_client import SECRET_KEY, running_service
from tests.support.backends import Backend
from tests.support.commands import command_context

AGENT = Caller(request_id="req-attack", client_ip="203.0.113.9")
REFUSED = asyncpg.InsufficientPrivilegeError  # permission denied, or a guard's refusal


@pytest.fixture
async def ctx(store: EventStore, pool: asyncpg.Pool) -> Context:
    # the app's secret (its signing keys) and today's time (the keys must not have expired)
    now = ManualClock(datetime.now(UTC).replace(microsecond=0))
    return await command_context(store, pool, now, secret=SECRET_KEY)


async def _history(ctx: Context, n: int = 4) -> list[Registered]:
    """Some registrations (each a key), and a signed checkpoint at the head."""
    made = [await register_anonymous(ctx, "api_key", AGENT) for _ in range(n)]
    assert ctx.keyring is not None
    assert await sign_now(ctx.pool, ctx.keyring, ctx.clock)
    return made


async def _attempt(pool: asyncpg.Pool, statements: Sequence[str]) -> None:
    """The statements in one transaction, as an attacker would run them, committed."""
    async with pool.acquire() as conn, conn.transaction():
        for sql in statements:
            await conn.execute(sql)


async def _log_state(pool: asyncpg.Pool) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    events = await pool.fetch("SELECT position, payload::text, hash FROM events ORDER BY 1")
    checkpoints = await pool.fetch("SELECT * FROM chain_checkpoints ORDER BY position")
    return events, checkpoints


async def _logs_in(backend: Backend, database_url: str, token: str) -> int:
    """The status /api/me answers `token`, from a service started now (nothing cached)."""
    async with running_service(backend, database_url) as service:
        answer = await service.client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        return answer.status_code


async def test_an_event_cannot_be_edited_with_the_trigger_disabled(ctx: Context) -> None:
    """Disable the append-only trigger, rewrite an event and re-chain it: refused."""
    await _history(ctx)
    before = await _log_state(ctx.pool)
    with pytest.raises(REFUSED):
        await _attempt(
            ctx.pool,
            [
                "ALTER TABLE events DISABLE TRIGGER events_append_only",
                """UPDATE events SET payload = '{"token_hash":"forged"}' WHERE position = 2""",
                "ALTER TABLE events ENABLE TRIGGER events_append_only",
            ],
        )
    with pytest.raises(REFUSED):  # and without touching the trigger, the privilege is missing
        await _attempt(ctx.pool, ["UPDATE events SET hash = hash WHERE position = 2"])
    assert await _log_state(ctx.pool) == before
    assert (await verify_log(ctx.store.read_all)).ok


async def test_the_tail_cannot_be_deleted_with_its_checkpoints(ctx: Context) -> None:
    """Delete the last events and the checkpoints that signed them: refused, both ways."""
    await _history(ctx)
    before = await _log_state(ctx.pool)
    with pytest.raises(REFUSED):
        await _attempt(
            ctx.pool,
            [
                "ALTER TABLE events DISABLE TRIGGER events_append_only",
                "DELETE FROM events WHERE position > 3",
                "ALTER TABLE events ENABLE TRIGGER events_append_only",
            ],
        )
    with pytest.raises(REFUSED):
        await _attempt(ctx.pool, ["DELETE FROM chain_checkpoints WHERE position > 3"])
    assert await _log_state(ctx.pool) == before


async def test_the_log_cannot_be_truncated(ctx: Context) -> None:
    """Disable the TRUNCATE trigger and empty the log (and the checkpoints): refused."""
    await _history(ctx)
    before = await _log_state(ctx.pool)
    with pytest.raises(REFUSED):
        await _attempt(
            ctx.pool,
            ["ALTER TABLE events DISABLE TRIGGER events_no_truncate", "TRUNCATE events"],
        )
    with pytest.raises(REFUSED):
        await _attempt(ctx.pool, ["TRUNCATE chain_checkpoints"])
    assert await _log_state(ctx.pool) == before


async def test_a_signed_checkpoint_cannot_be_rewritten(ctx: Context) -> None:
    """Move a checkpoint's signed hash or position: refused."""
    await _history(ctx)
    before = await _log_state(ctx.pool)
    with pytest.raises(REFUSED):
        await _attempt(ctx.pool, ["UPDATE chain_checkpoints SET chain_hash = sha256('x')"])
    with pytest.raises(REFUSED):
        await _attempt(ctx.pool, ["UPDATE chain_checkpoints SET position = position - 1"])
    assert await _log_state(ctx.pool) == before


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TRIGGER events_append_only ON events",
        "DROP TRIGGER credentials_backed_by_events ON credentials",
        "ALTER TABLE credentials DISABLE TRIGGER credentials_backed_by_events",
        "ALTER TABLE credentials DISABLE TRIGGER credentials_changes_backed_by_events",
        "DROP FUNCTION events_refuse_change() CASCADE",
        "CREATE OR REPLACE FUNCTION credentials_rows_backed() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        "ALTER TABLE events OWNER TO CURRENT_USER",
    ],
)
async def test_the_guards_cannot_be_dropped_disabled_or_replaced(
    pool: asyncpg.Pool, statement: str
) -> None:
    """Each way of taking a trigger away is the owner's alone; and triggers cannot be skipped
    for a session (session_replication_role is for superusers)."""
    with pytest.raises(REFUSED):
        await _attempt(pool, [statement])
    with pytest.raises(REFUSED):
        await _attempt(pool, ["SET LOCAL session_replication_role = replica"])
    triggers = await pool.fetch(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'O' "
        "AND tgrelid IN ('events'::regclass, 'credentials'::regclass) ORDER BY 1"
    )
    assert [t["tgname"] for t in triggers] == [
        "credentials_backed_by_events",
        "credentials_changes_backed_by_events",
        "events_append_only",
        "events_no_truncate",
    ]


async def test_a_credential_with_no_event_behind_it_cannot_log_in(
    ctx: Context, backend: Backend, database_url: str
) -> None:
    """Insert a credentials row for a key of the attacker's with no event behind it, or swap
    the attacker's key into a row whose event issued another: the commit is refused, and the
    key does not log in."""
    [victim, *_] = await _history(ctx)
    forged = "ak_" + secrets.token_urlsafe(32)
    insert = (
        "INSERT INTO credentials (credential_id, tenant_id, kind, token_hash, scopes, issued_via,"
        " status, issued_at, version) VALUES ('{cid}', 'default', 'api_key', '{digest}', "
        "'{{api.read,api.write}}', 'anonymous', 'active', now(), 1)"
    )
    with pytest.raises(REFUSED):
        await _attempt(ctx.pool, [insert.format(cid="cred_forged", digest=token_hash(forged))])
    borrowed = await ctx.pool.fetchval(
        "SELECT credential_id FROM credentials WHERE registration_id = $1", victim.registration_id
    )
    with pytest.raises(REFUSED):  # the row's event exists, but it issued another key
        await _attempt(
            ctx.pool,
            [
                f"UPDATE credentials SET token_hash = '{token_hash(forged)}' "
                f"WHERE credential_id = '{borrowed}'"
            ],
        )
    assert (
        await ctx.pool.fetchval(
            "SELECT count(*) FROM credentials WHERE token_hash = $1", token_hash(forged)
        )
        == 0
    )
    assert await _logs_in(backend, database_url, forged) == 401
    assert victim.credential is not None
    assert await _logs_in(backend, database_url, victim.credential) == 200


# The rows of `credentials`, as one statement of many rows (events/rows.py's column forms).
_ROWS_AT_ONCE = (
    "INSERT INTO credentials (credential_id, tenant_id, kind, token_hash, scopes, issued_via,"
    " registration_id, status, issued_at, version) SELECT c, 'default', 'api_key', h,"
    " string_to_array(s, ' '), 'anonymous', r, 'active', t, 1"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])"
    " AS u (c, h, s, r, t)"
)


async def test_a_forged_row_among_real_ones_sinks_the_whole_statement(ctx: Context) -> None:
    """The guards check every row a statement writes, not one per statement: three keys'
    `credential.issued` events are in the log, and one INSERT writes their rows with a fourth,
    the attacker's, last. Refused, and nothing of it stays; the same statement without the
    forged row is taken (so the three were good rows, and the fourth alone sank it)."""
    now = ctx.clock.now()
    minted = [
        mint(ctx, "api_key", now=now, scopes=("api.read",), issued_via="anonymous",
             registration_id=f"reg_{i}", user_id=None)
        for i in range(3)
    ]  # fmt: skip
    recorded = await ctx.store.append_many(
        [StreamAppend(m.change.stream, 0, [LEDGER.new(e, occurred_at=now) for e in m.change.events])
         for m in minted]
    )  # fmt: skip
    at = recorded[0].occurred_at
    real = [(m.credential_id, token_hash(m.plain), "api.read", f"reg_{i}", at)
            for i, m in enumerate(minted)]  # fmt: skip
    forged = ("cred_forged", token_hash("ak_" + secrets.token_urlsafe(32)), "api.read", "reg_x", at)

    async def write(rows: Sequence[tuple[object, ...]]) -> None:
        async with ctx.pool.acquire() as conn, conn.transaction():
            await conn.execute(_ROWS_AT_ONCE, *(list(column) for column in zip(*rows, strict=True)))

    with pytest.raises(REFUSED):
        await write([*real, forged])
    assert await ctx.pool.fetchval("SELECT count(*) FROM credentials") == 0
    await write(real)
    assert await ctx.pool.fetchval("SELECT count(*) FROM credentials") == 3


# A registration's row as the writer sends a batch of them (events/rows.py's column forms).
_REGISTRATIONS_AT_ONCE = (
    "INSERT INTO registrations (registration_id, tenant_id, kind, status,"
    " requested_credential_type, claim_token_hash, expires_at, version, created_at, updated_at)"
    " SELECT r, 'default', 'anonymous', 'unclaimed', 'api_key', h, now(), v, now(), now()"
    " FROM unnest($1::text[], $2::text[], $3::integer[]) AS u (r, h, v)"
)


async def test_a_registration_row_needs_its_event(ctx: Context, owner_pool: asyncpg.Pool) -> None:
    """A registration's row holds the agent's claim state: the runtime role may insert one
    only at a version its stream has in the log. Two real registrations lose their rows (the
    owner deletes them, as a repair would); the runtime role puts them back in one statement
    with a third row for a registration that was never made: refused whole, and again with
    the third's id one character off a real one. A real registration's row at a version its
    stream never reached: refused. The two real rows alone: taken."""
    made = await _history(ctx, n=2)
    rows = {
        r["registration_id"]: r["claim_token_hash"]
        for r in await ctx.pool.fetch("SELECT registration_id, claim_token_hash FROM registrations")
    }
    await owner_pool.execute("DELETE FROM registrations")
    real = [(m.registration_id, rows[m.registration_id], 1) for m in made]

    async def write(batch: Sequence[tuple[object, ...]]) -> None:
        async with ctx.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _REGISTRATIONS_AT_ONCE, *(list(column) for column in zip(*batch, strict=True))
            )

    with pytest.raises(REFUSED):
        await write([*real, ("reg_forged", "h-forged", 1)])
    with pytest.raises(REFUSED):
        await write([*real, (made[0].registration_id + "x", "h-other", 1)])
    with pytest.raises(REFUSED):  # its stream's only event is version 1
        await write([(made[0].registration_id, rows[made[0].registration_id], 2)])
    assert await ctx.pool.fetchval("SELECT count(*) FROM registrations") == 0
    await write(real)
    assert await ctx.pool.fetchval("SELECT count(*) FROM registrations") == 2


async def test_a_revoked_credential_cannot_be_brought_back_or_widened(
    ctx: Context, backend: Backend, database_url: str
) -> None:
    """Set a revoked key active again (with or without moving its version), or widen a live
    key's scopes or expiry, without the event: refused, and the revoked key stays refused."""
    [revoked_one, live, *_] = await _history(ctx)
    await revoke(ctx, "registration", revoked_one.registration_id, AGENT, note="drill")
    of = "registration_id = '{}'"
    for change in (
        "status = 'active', ended_at = NULL, end_reason = NULL",
        "status = 'active', ended_at = NULL, end_reason = NULL, version = version + 1",
        "status = 'active', ended_at = NULL, end_reason = NULL, version = version - 1",
    ):
        with pytest.raises(REFUSED):
            await _attempt(
                ctx.pool,
                [f"UPDATE credentials SET {change} WHERE {of.format(revoked_one.registration_id)}"],
            )
    far = datetime(2099, 1, 1, tzinfo=UTC).isoformat()
    for change in (
        "scopes = '{api.read,api.write,api.admin}'",
        f"expires_at = '{far}'",
        "scopes = '{api.read,api.write,api.admin}', version = version + 1",
    ):
        with pytest.raises(REFUSED):
            await _attempt(
                ctx.pool,
                [f"UPDATE credentials SET {change} WHERE {of.format(live.registration_id)}"],
            )
    assert revoked_one.credential is not None
    assert await _logs_in(backend, database_url, revoked_one.credential) == 401


async def test_a_registration_cannot_be_marked_claimed_without_its_event(ctx: Context) -> None:
    """The claim state a credential reports comes from `registrations`: forging it is
    refused like a forged credential."""
    [made, *_] = await _history(ctx)
    with pytest.raises(REFUSED):
        await _attempt(
            ctx.pool,
            [
                "UPDATE registrations SET status = 'claimed', user_id = 'usr_attacker' "
                f"WHERE registration_id = '{made.registration_id}'"
            ],
        )
    status = await ctx.pool.fetchval(
        "SELECT status FROM registrations WHERE registration_id = $1", made.registration_id
    )
    assert status == "unclaimed"


async def _admin_status(backend: Backend, database_url: str, token: str) -> int:
    """The status the trust list answers `token`, from a service started now (nothing cached)."""
    async with running_service(backend, database_url) as service:
        answer = await service.client.get(
            "/admin/trusted-issuers", headers={"Authorization": f"Bearer {token}"}
        )
        return answer.status_code


async def test_an_operator_credential_cannot_be_forged_or_revived(
    ctx: Context, backend: Backend, database_url: str
) -> None:
    """The scoped credentials' table (finding 2) decides who operates: an `operator` row of
    the attacker's with no `access.granted` behind it, or a revoked credential made live or
    widened again, is refused at commit, and neither token passes the guard."""
    forged = "ala_" + secrets.token_urlsafe(32)
    with pytest.raises(REFUSED):
        await _attempt(
            ctx.pool,
            [
                "INSERT INTO access_credentials (credential_id, tenant_id, scope, label, "
                f"token_hash, granted_at, version) VALUES ('acc_forged', NULL, 'operator', "
                f"'x', '{token_hash(forged)}', now(), 1)"
            ],
        )
    granted = await grant_access(ctx, AGENT, scope="metrics", label="prometheus")
    credential_id = granted.access.credential_id
    assert await revoke_access(ctx, credential_id, AGENT, reason="rotated")
    for change in (
        "revoked_at = NULL, revoke_reason = NULL",
        "revoked_at = NULL, revoke_reason = NULL, version = version + 1",
        "scope = 'operator', version = version + 1",
    ):
        with pytest.raises(REFUSED):
            await _attempt(
                ctx.pool,
                [f"UPDATE access_credentials SET {change} WHERE credential_id = '{credential_id}'"],
            )
    assert await _admin_status(backend, database_url, forged) == 401
    assert await _admin_status(backend, database_url, granted.token) == 401

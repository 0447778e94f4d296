"""The owner/runtime split as `migrate` leaves it (migrations/privileges.sql, guards.sql):
what the runtime role may do on each table, that replay keeps it, and the warning `serve`
gives when it connects as a role that could rewrite the log. The attacks themselves are in
tests/security/test_runtime_role_rewrites_history.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources

import asyncpg
import pytest

from events.envelope import StreamRef
from events.issuer import STREAM_TYPE as ISSUER_STREAM
from events.issuer import IssuerTrusted, IssuerUpdated
from events.ledger import LEDGER
from events.store import EventStore, StreamAppend
from migrations.roles import RUNTIME_ROLE
from projections.replay import replay
from service.commands.context import Caller
from service.commands.registration import register_anonymous
from service.domain.trust_list import issuer_stream_id
from tests.support.backends import Backend
from tests.support.commands import command_context
from tests.support.nats import NatsNames
from tests.support.revocations import serve_env
from tests.support.serve_process import serving

PRIVILEGES = resources.files("migrations").joinpath("privileges.sql").read_text(encoding="utf-8")
KINDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
READ_APPEND = {"SELECT", "INSERT"}
PROJECTED = READ_APPEND | {"UPDATE"}
PRUNED = READ_APPEND | {"UPDATE", "DELETE"}
# The grants table of docs/security.md ("The database roles"), as the database has it.
EXPECTED = {
    "events": READ_APPEND,
    "chain_checkpoints": READ_APPEND,
    "chain_checkpoint_keys": READ_APPEND,
    "registrations": PROJECTED,
    "credentials": PROJECTED,
    "users": PROJECTED,
    "trusted_issuers": PROJECTED,
    "delegations": PROJECTED,
    "subscriptions": PROJECTED,
    "tenants": PROJECTED,
    "checkpoints": PROJECTED,
    "subject_keys": PROJECTED,
    "signing_keys": PROJECTED,
    "mail_outbox": PRUNED,
    "access_credentials": PROJECTED,
    "attempt_addresses": PRUNED,
    "retained_keys": {"SELECT"},
    "seen_jtis": READ_APPEND | {"DELETE"},
    "push_leases": PRUNED,
    "rate_limit_windows": PRUNED,
    "registration_snapshots": PRUNED,
    "sign_in_links": PRUNED,
    "claim_polls": PRUNED,
    "schema_migrations": {"SELECT"},
}
GUARDED = ("credentials", "registrations", "trusted_issuers", "delegations", "subscriptions",
           "tenants", "access_credentials")  # fmt: skip
AGENT = Caller(request_id="req-roles", client_ip="203.0.113.10")


async def _tables(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return sorted(r["tablename"] for r in rows)


async def _granted(pool: asyncpg.Pool) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for table in await _tables(pool):
        out[table] = {
            kind
            for kind in KINDS
            if await pool.fetchval(
                "SELECT has_table_privilege($1, $2, $3)", RUNTIME_ROLE, f"public.{table}", kind
            )
        }
    return out


async def _guards(pool: asyncpg.Pool) -> list[str]:
    """The tables whose two checks (migrations/guards.sql: INSERT and UPDATE) are both on."""
    rows = await pool.fetch(
        "SELECT c.relname FROM pg_class c WHERE 2 = (SELECT count(*) FROM pg_trigger t "
        "WHERE t.tgrelid = c.oid AND t.tgenabled = 'O' AND t.tgname IN "
        "(c.relname || '_backed_by_events', c.relname || '_changes_backed_by_events')) "
        "ORDER BY 1"
    )
    return [r["relname"] for r in rows]


async def test_every_table_has_a_line_in_privileges_sql(pool: asyncpg.Pool) -> None:
    """A table a migration adds gets the default (SELECT, INSERT) until someone writes down
    what it needs: this names any table privileges.sql does not mention."""
    unnamed = [t for t in await _tables(pool) if not re.search(rf"\b{t}\b", PRIVILEGES)]
    assert unnamed == []


async def test_the_runtime_role_has_exactly_the_grants_table(pool: asyncpg.Pool) -> None:
    """Read and append on the log and the checkpoints; UPDATE where projections and workers
    need it; DELETE only on operational state; TRUNCATE, REFERENCES, TRIGGER nowhere; and it
    owns nothing."""
    assert await _granted(pool) == EXPECTED
    owned = await pool.fetchval(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND pg_has_role($1, c.relowner, 'MEMBER')",
        RUNTIME_ROLE,
    )
    assert owned == 0
    assert await _guards(pool) == sorted(GUARDED)


async def test_replay_keeps_the_grants_and_the_guards(
    store: EventStore, pool: asyncpg.Pool, owner_database_url: str
) -> None:
    """The tables replay switches in are new: they get the same grants and guards, so the
    runtime goes on writing them, and still cannot forge a row."""
    ctx = await command_context(store, pool)
    await register_anonymous(ctx, "api_key", AGENT)
    await replay(owner_database_url)
    assert await _granted(pool) == EXPECTED
    assert await _guards(pool) == sorted(GUARDED)
    await register_anonymous(ctx, "api_key", AGENT)
    assert await pool.fetchval("SELECT count(*) FROM credentials") == 2


async def test_one_statement_over_two_tenants_rows_of_an_issuer_is_judged_row_by_row(
    store: EventStore, pool: asyncpg.Pool, owner_pool: asyncpg.Pool
) -> None:
    """An issuer's stream id is the same in every tenant that trusts it, so the guards pair an
    UPDATE's old and new rows by tenant and stream id: one statement moving each tenant's row
    to an event of its own stream is taken (paired by stream id alone, tenant `ta`'s new
    version 2 would meet `tb`'s old 3 and be refused), and moving one back is refused."""
    issuer = "https://agents.example.net"
    stream_id = issuer_stream_id(issuer)
    now = datetime.now(UTC)
    trusted = IssuerTrusted(issuer=issuer, algorithms=("ES256",))
    updated = IssuerUpdated(issuer=issuer, algorithms=("ES256",))
    await store.append_many(
        [StreamAppend(StreamRef(tenant, ISSUER_STREAM, stream_id), 0,
                      [LEDGER.new(e, occurred_at=now) for e in (trusted, *[updated] * more)])
         for tenant, more in (("ta", 1), ("tb", 3))]
    )  # fmt: skip
    await owner_pool.execute(  # the rows as the projection left them: ta at 1, tb at 3
        "INSERT INTO trusted_issuers (issuer, tenant_id, stream_id, algorithms,"
        " link_by_verified_email, client_ids, required_amr, trusted, version, updated_at)"
        " VALUES ($1, 'ta', $2, '{ES256}', true, '{}', '{}', true, 1, now()),"
        " ($1, 'tb', $2, '{ES256}', true, '{}', '{}', true, 3, now())",
        issuer,
        stream_id,
    )
    move = (
        "UPDATE trusted_issuers"
        " SET version = CASE tenant_id WHEN 'ta' THEN $2::int ELSE $3::int END"
    )
    await pool.execute(f"{move} WHERE issuer = $1", issuer, 2, 4)
    rows = await pool.fetch("SELECT tenant_id, version FROM trusted_issuers ORDER BY 1")
    assert [(r["tenant_id"], r["version"]) for r in rows] == [("ta", 2), ("tb", 4)]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute(f"{move} WHERE issuer = $1 AND tenant_id = 'ta'", issuer, 1, 4)


async def _serve_warnings(backend: Backend, url: str, nats_names: NatsNames) -> list[str]:
    env = serve_env(url, backend.nats_url, nats_names)
    async with serving([], env) as server:
        _, err = await server.stop()
    return [line for line in err.splitlines() if "database.role_can_rewrite_history" in line]


async def test_serve_warns_when_it_connects_as_the_owner(
    backend: Backend, database_url: str, owner_database_url: str, nats_names: NatsNames
) -> None:
    """The single-URL setup still runs, with one warning naming the fix; as the runtime role,
    no warning."""
    [warning] = await _serve_warnings(backend, owner_database_url, nats_names)
    assert '"events_owner": "authledger_owner"' in warning
    assert "AUTHLEDGER_OWNER_DATABASE_URL" in warning
    assert await _serve_warnings(backend, database_url, nats_names) == []

"""`authledger replay`: rebuild beside and switch under live writes; `--verify` names every
difference between the log and the live read models. Both run as the owner role (shadow
schemas), and the corruptions they are shown are made as the owner too: the runtime role may
not write a read-model row without its event (migrations/guards.sql)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from events.store import EventStore
from migrations.runner import available
from projections.replay import SHADOW, _create_shadow, _fold, replay, verify
from projections.runner import TABLES
from service.commands.claim import complete_claim, issue_otp
from service.commands.context import Caller, Context
from service.commands.erasure import erase_person
from service.commands.registration import register_anonymous, register_verified_email
from service.crypto.tokens import token_hash
from service.mail.outbox import open_link_token
from tests.support.commands import SECRET, command_context

AGENT = Caller(request_id="req-1", client_ip="203.0.113.7")


@pytest.fixture
async def ctx(store: EventStore, pool: asyncpg.Pool) -> Context:
    return await command_context(store, pool)


async def _some_history(ctx: Context, n: int = 5) -> None:
    for i in range(n):
        await register_anonymous(ctx, "api_key", AGENT)
        await register_verified_email(ctx, f"p{i}@example.net", "access_token", AGENT)


async def _counts(pool: asyncpg.Pool) -> dict[str, int]:
    return {t: int(await pool.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}


async def test_verify_finds_nothing_on_a_clean_log(
    ctx: Context, owner_database_url: str, owner_pool: asyncpg.Pool
) -> None:
    await _some_history(ctx)
    report = await verify(owner_database_url)
    assert report.differences == []
    assert report.applied == report.head == await ctx.store.head_position()
    schemas = await ctx.pool.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'authledger_replay%'"
    )
    assert schemas == 0  # the throwaway shadow is gone


async def test_verify_names_each_corrupted_row(
    ctx: Context, owner_database_url: str, owner_pool: asyncpg.Pool
) -> None:
    await _some_history(ctx)
    picked = await ctx.pool.fetchrow(
        "SELECT credential_id, scopes FROM credentials WHERE kind = 'api_key' LIMIT 1"
    )
    assert picked is not None
    key, changed = picked["credential_id"], picked["scopes"]
    await owner_pool.execute(
        "UPDATE credentials SET scopes = '{api.admin}', status = 'active' WHERE credential_id = $1",
        key,
    )
    gone = await ctx.pool.fetchval("SELECT registration_id FROM registrations LIMIT 1")
    await owner_pool.execute("DELETE FROM registrations WHERE registration_id = $1", gone)
    await owner_pool.execute(
        "INSERT INTO users (user_id, tenant_id, email_verified, created_at) "
        "VALUES ('usr_forged', 'default', true, now())"
    )
    report = await verify(owner_database_url)
    lines = sorted(d.line() for d in report.differences)
    assert lines == sorted(
        [
            f"credentials [{key}] differs: scopes",
            f"registrations [{gone}] missing",
            "users [usr_forged] extra",
        ]
    )
    assert changed == ["api.read"]


async def test_replay_under_concurrent_writes_loses_nothing(
    ctx: Context, owner_database_url: str, owner_pool: asyncpg.Pool
) -> None:
    await _some_history(ctx, 20)
    await owner_pool.execute("UPDATE credentials SET scopes = '{api.admin}'")  # live is wrong
    stop, writing = asyncio.Event(), asyncio.Event()

    async def keep_registering() -> int:
        made = 0
        while not stop.is_set():
            await register_anonymous(ctx, "api_key", AGENT)
            made += 1
            writing.set()
        return made

    writer = asyncio.create_task(keep_registering())
    await asyncio.wait_for(writing.wait(), 30)  # the writer has written before the build
    report = await replay(owner_database_url, batch=7)  # small batches: many transactions
    stop.set()
    made = await writer
    assert made > 0
    assert any(d.table == "credentials" for d in report.differences)
    after = await verify(owner_database_url)
    assert after.differences == []
    counts = await _counts(ctx.pool)
    registered = await ctx.pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'registration.created'"
    )
    assert counts["registrations"] == registered == 40 + made
    assert (
        await ctx.pool.fetchval("SELECT count(*) FROM credentials WHERE 'api.admin' = ANY(scopes)")
        == 0
    )


async def test_replay_keeps_constraint_and_index_names(
    ctx: Context, owner_database_url: str, owner_pool: asyncpg.Pool
) -> None:
    query = (
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
        "AND tablename = ANY($1::text[]) ORDER BY indexname"
    )
    before = [r["indexname"] for r in await ctx.pool.fetch(query, list(TABLES))]
    await _some_history(ctx, 2)
    await replay(owner_database_url)
    after = [r["indexname"] for r in await ctx.pool.fetch(query, list(TABLES))]
    assert after == before
    await register_anonymous(ctx, "api_key", AGENT)  # the live path writes to the new tables
    assert (await verify(owner_database_url)).differences == []


async def test_an_interrupted_build_resumes_without_applying_twice(
    ctx: Context, owner_database_url: str, owner_pool: asyncpg.Pool
) -> None:
    await _some_history(ctx, 5)
    head = await ctx.store.head_position()
    conn = await asyncpg.connect(owner_database_url)
    try:
        await _create_shadow(conn, SHADOW)
        first = await _fold(conn, SHADOW, head // 2, batch=3)
    finally:
        await conn.close()
    assert first == head // 2
    report = await replay(owner_database_url)
    assert report.applied == head - first
    assert (await verify(owner_database_url)).differences == []


async def _claimed(ctx: Context, email: str) -> tuple[str, str]:
    """An e-mail registration claimed through its link: (registration id, link token)."""
    reg = await register_verified_email(ctx, email, "access_token", AGENT)
    row = await ctx.pool.fetchrow(
        "SELECT o.attempt_id, o.link_token_sealed FROM registrations r "
        "JOIN mail_outbox o ON o.attempt_id = r.attempt_id WHERE r.registration_id = $1",
        reg.registration_id,
    )
    assert row is not None
    link = open_link_token(SECRET, row["attempt_id"], row["link_token_sealed"])
    code = (await issue_otp(ctx, link, AGENT)).otp
    await complete_claim(ctx, reg.claim_token, code, AGENT)
    return reg.registration_id, link


async def test_0015_gives_earlier_claims_their_link_hash_back(
    ctx: Context, owner_database_url: str, owner_pool: asyncpg.Pool
) -> None:
    """Rows claimed before 0015 (hash cleared) get their link's hash back, erased ones do not,
    and verify then finds the live table equal to the log's fold."""
    kept, link = await _claimed(ctx, "kept@example.net")
    erased, _ = await _claimed(ctx, "gone@example.net")
    await erase_person(ctx, AGENT, email="gone@example.net")
    await owner_pool.execute("UPDATE registrations SET attempt_token_hash = NULL")  # as before
    assert [d.key for d in (await verify(owner_database_url)).differences] == [(kept,)]
    [migration] = [m for m in available() if m.version == 15]
    await owner_pool.execute(migration.sql)
    rows = await ctx.pool.fetch("SELECT registration_id, attempt_token_hash FROM registrations")
    hashes = {r["registration_id"]: r["attempt_token_hash"] for r in rows}
    assert hashes == {kept: token_hash(link), erased: None}
    assert (await verify(owner_database_url)).differences == []

"""What an ID-JAG registration reads before its append, on a real database: the issuer's trust
entry, the head of the delegation the assertion names and its user's data key come back in one
query, and the head read ahead serves the first attempt only (a retry after a conflict reads
the row again)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest

from events.clock import ManualClock
from events.store import EventStore
from service.commands.context import Caller, Context
from service.commands.delegation_head import DelegationHead, delegation_head
from service.commands.identity import register_id_jag
from service.commands.trust_list import distrust, lookup_with_head, trust
from service.crypto.pii import SubjectErased
from service.domain.trust_list import delegation_id_for
from service.providers.jwks import JwksCache
from tests.support.commands import command_context
from tests.support.idp import IdentityProvider
from tests.support.outbound import LOOPBACK_POLICY

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
AGENT = Caller(request_id="req-agent", client_ip="203.0.113.7")
OPERATOR = Caller(request_id="req-op", actor="admin")
HEAD_READ = "FROM delegations WHERE delegation_id"  # delegations.sql `head`, alone
KEY_READ = "FROM subject_keys WHERE subject_id"  # the Sealer's own key reads
READ_AHEAD = "LEFT JOIN delegations"  # issuers.sql `lookups_with_heads`


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as provider:
        yield provider


@pytest.fixture
async def queries() -> list[str]:
    return []


@pytest.fixture
async def ctx(
    database_url: str, queries: list[str], idp: IdentityProvider
) -> AsyncIterator[Context]:
    async def log_queries(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: queries.append(record.query))

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4, init=log_queries)
    clock = ManualClock(T0)
    store = EventStore(pool, clock=clock)
    keys = JwksCache(clock=clock, allow_loopback_http=True, outbound=LOOPBACK_POLICY)
    created = await command_context(store, pool, clock, provider_keys=keys)
    await trust(created, idp.trusted(), OPERATOR)
    try:
        yield created
    finally:
        await keys.close()
        await store.close()
        await pool.close()


def _jag(ctx: Context, idp: IdentityProvider, sub: str) -> str:
    return idp.mint_id_jag(aud=ctx.tenant.issuer, now=ctx.clock.now(), sub=sub)


def _before_the_append(queries: list[str]) -> list[str]:
    """The statements sent before the append's transaction began (asyncpg's reset of a
    released connection aside: this test pool keeps the library's default)."""
    sent = queries[: queries.index("BEGIN;")] if "BEGIN;" in queries else queries
    return [q for q in sent if not q.startswith("SELECT pg_advisory_unlock_all()")]


def _delegation_of(ctx: Context, idp: IdentityProvider, subject: str) -> str:
    return delegation_id_for(idp.issuer, subject, ctx.tenant.issuer)


async def _user_of(ctx: Context, subject: str, idp: IdentityProvider) -> str:
    head = await delegation_head(ctx, _delegation_of(ctx, idp, subject))
    assert head is not None
    return head.user_id


@pytest.mark.parametrize("key_cached", [True, False], ids=["key cached", "key not cached"])
async def test_a_returning_subject_is_read_with_its_issuer_in_one_query(
    ctx: Context, idp: IdentityProvider, queries: list[str], key_cached: bool
) -> None:
    """One query before the append, whether or not this process holds the user's data key
    (a returning user seen here more than a minute ago, or by another process, is not)."""
    await register_id_jag(ctx, _jag(ctx, idp, "ana"), "api_key", AGENT)
    user_id = await _user_of(ctx, "ana", idp)
    if not key_cached:
        ctx.sealer.forget(user_id)
    queries.clear()
    again = await register_id_jag(ctx, _jag(ctx, idp, "ana"), "api_key", AGENT)
    reads = _before_the_append(queries)
    assert len(reads) == 1, reads
    assert READ_AHEAD in reads[0]
    assert not any(HEAD_READ in q or KEY_READ in q for q in queries), queries
    ana = _delegation_of(ctx, idp, "ana")
    head = await delegation_head(ctx, ana)
    assert head is not None
    assert (head.user_id, head.version) == (user_id, 3)  # created, used, used
    row = await ctx.pool.fetchrow(
        "SELECT user_id, delegation_id FROM credentials WHERE credential_id = $1",
        again.credential.credential_id,
    )
    assert row is not None
    assert (row["user_id"], row["delegation_id"]) == (user_id, ana)
    sealed_ip = await ctx.pool.fetchval(
        "SELECT metadata->>'client_ip' FROM events WHERE type = 'delegation.used' "
        "ORDER BY position DESC LIMIT 1"
    )
    assert await ctx.sealer.open(ctx.pool, sealed_ip) == AGENT.client_ip  # under ana's key


async def test_an_erased_users_key_is_not_taken_from_the_read_ahead(
    ctx: Context, idp: IdentityProvider
) -> None:
    """The read ahead hands the Sealer a key only from a row that still holds one: for a user
    erased since, the registration is refused as before, nothing sealed under a stale key."""
    await register_id_jag(ctx, _jag(ctx, idp, "ana"), "api_key", AGENT)
    user_id = await _user_of(ctx, "ana", idp)
    await ctx.sealer.erase(ctx.pool, user_id)
    head = await ctx.store.head_position()
    with pytest.raises(SubjectErased):
        await register_id_jag(ctx, _jag(ctx, idp, "ana"), "api_key", AGENT)
    assert await ctx.store.head_position() == head


async def test_the_head_read_ahead_serves_one_read_of_its_own_delegation(
    ctx: Context, idp: IdentityProvider
) -> None:
    await register_id_jag(ctx, _jag(ctx, idp, "ana"), "api_key", AGENT)
    ana = _delegation_of(ctx, idp, "ana")
    entry, ahead = await lookup_with_head(ctx, idp.issuer, ana)
    assert entry is not None
    assert entry.issuer == idp.issuer
    seen = await delegation_head(ctx, ana)
    assert seen is not None
    assert ahead.head == seen
    await register_id_jag(ctx, _jag(ctx, idp, "ana"), "api_key", AGENT)  # the head moves on
    other = _delegation_of(ctx, idp, "bob")
    assert await ahead.read(ctx, other) is None  # another delegation: its own row (none)
    assert await ahead.read(ctx, ana) == seen  # the first read of its own: what was read ahead
    moved = await ahead.read(ctx, ana)  # any later one (a retry's): the row as it is now
    assert moved == DelegationHead(seen.user_id, seen.version + 1, seen.generation)


async def test_a_subject_never_seen_and_an_issuer_no_longer_trusted_read_no_head(
    ctx: Context, idp: IdentityProvider
) -> None:
    await register_id_jag(ctx, _jag(ctx, idp, "ana"), "api_key", AGENT)
    stranger = _delegation_of(ctx, idp, "nobody")
    entry, ahead = await lookup_with_head(ctx, idp.issuer, stranger)
    assert entry is not None
    assert (ahead.delegation_id, ahead.head) == (stranger, None)
    await distrust(ctx, idp.issuer, OPERATOR, "test")
    ana = _delegation_of(ctx, idp, "ana")
    entry, ahead = await lookup_with_head(ctx, idp.issuer, ana)
    assert entry is None
    assert (ahead.delegation_id, ahead.head) == (None, None)  # nothing read ahead


async def test_concurrent_registrations_read_their_issuer_and_heads_in_one_query(
    ctx: Context, idp: IdentityProvider, queries: list[str]
) -> None:
    """The callers of one moment share the read ahead (service/commands/coalesced.py), and
    each gets its own subject's head: every credential is its own user's, every delegation
    one version on."""
    subjects = ["ana", "bob", "cy", "dee"]
    for subject in subjects:
        await register_id_jag(ctx, _jag(ctx, idp, subject), "api_key", AGENT)
    users = {s: await _user_of(ctx, s, idp) for s in subjects}
    assert len(set(users.values())) == len(subjects)
    queries.clear()
    issued = await asyncio.gather(
        *(register_id_jag(ctx, _jag(ctx, idp, s), "api_key", AGENT) for s in subjects)
    )
    assert sum(READ_AHEAD in q for q in queries) == 1, queries
    assert not any(HEAD_READ in q for q in queries), queries
    for subject, delegated in zip(subjects, issued, strict=True):
        row = await ctx.pool.fetchrow(
            "SELECT user_id, delegation_id FROM credentials WHERE credential_id = $1",
            delegated.credential.credential_id,
        )
        assert row is not None
        assert (row["user_id"], row["delegation_id"]) == (
            users[subject],
            _delegation_of(ctx, idp, subject),
        )
        head = await delegation_head(ctx, _delegation_of(ctx, idp, subject))
        assert head is not None
        assert head.version == 3  # created, used, used


async def test_one_shared_read_answers_each_caller_for_its_own_tenant_issuer_and_subject(
    ctx: Context, idp: IdentityProvider, queries: list[str]
) -> None:
    """A trusted issuer with a returning subject, the same with a stranger and with no
    subject, an issuer nobody trusts, and another tenant (which trusts nobody) asking about
    the same issuer: one query, and each answer is the one its own read would give."""
    await register_id_jag(ctx, _jag(ctx, idp, "ana"), "api_key", AGENT)
    ana, stranger = _delegation_of(ctx, idp, "ana"), _delegation_of(ctx, idp, "nobody")
    other = replace(ctx, tenant=msgspec.structs.replace(ctx.tenant, tenant_id="other"))
    queries.clear()
    answers = await asyncio.gather(
        lookup_with_head(ctx, idp.issuer, ana),
        lookup_with_head(ctx, "https://untrusted.example", ana),
        lookup_with_head(other, idp.issuer, ana),
        lookup_with_head(ctx, idp.issuer, stranger),
        lookup_with_head(ctx, idp.issuer, None),
    )
    assert sum(READ_AHEAD in q for q in queries) == 1, queries
    (known, _), (untrusted, nothing), (elsewhere, none_there), (new, fresh), (bare, empty) = answers
    assert known is not None
    assert known.issuer == idp.issuer
    assert answers[0][1].head == await delegation_head(ctx, ana)
    assert (untrusted, nothing.delegation_id) == (None, None)
    assert (elsewhere, none_there.delegation_id) == (None, None)
    assert new == known
    assert (fresh.delegation_id, fresh.head) == (stranger, None)
    assert bare == known
    assert (empty.delegation_id, empty.head) == (None, None)

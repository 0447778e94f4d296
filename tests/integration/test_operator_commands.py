"""The trust list and operator revocations as commands, against a real Postgres."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from events.store import EventStore
from service.cli.operator import SCOPES
from service.commands.context import Caller, Context
from service.commands.registration import register_anonymous
from service.commands.revocation import revoke
from service.commands.trust_list import BadEntry, check_entry, distrust, listed, lookup, trust
from service.crypto.tokens import token_hash
from service.domain.trust_list import NotTrusted
from service.outbound.policy import policy_of
from service.providers.trust import TrustedIssuer
from tests.support.commands import command_context
from tests.support.outbound import LOOPBACK_ALLOWED

OPERATOR = Caller(request_id="req-op", actor="admin")
AGENT = Caller(request_id="req-agent", client_ip="203.0.113.9")
IDP = "https://idp.example"


@pytest.fixture
async def ctx(store: EventStore, pool: asyncpg.Pool) -> Context:
    return await command_context(store, pool)


async def _events(ctx: Context, event_type: str) -> list[asyncpg.Record]:
    return list(
        await ctx.pool.fetch(
            "SELECT stream_id, payload::text AS data, metadata::text AS metadata FROM events"
            " WHERE type = $1 ORDER BY position",
            event_type,
        )
    )


async def test_trust_update_remove_and_trust_again_are_events(ctx: Context) -> None:
    entry = TrustedIssuer(issuer=IDP, algorithms=("ES256",), display_name="IdP")
    assert (await trust(ctx, entry, OPERATOR)).outcome == "trusted"
    assert (await trust(ctx, entry, OPERATOR)).outcome == "unchanged"
    assert await lookup(ctx, IDP) == entry
    stricter = TrustedIssuer(issuer=IDP, algorithms=("EdDSA",), link_by_verified_email=False)
    assert (await trust(ctx, stricter, OPERATOR)).outcome == "updated"
    assert await lookup(ctx, IDP) == stricter
    assert (await distrust(ctx, IDP, OPERATOR, "incident 7")).outcome == "removed"
    assert await lookup(ctx, IDP) is None
    assert await listed(ctx) == []
    with pytest.raises(NotTrusted):
        await distrust(ctx, IDP, OPERATOR, None)
    assert (await trust(ctx, entry, OPERATOR)).outcome == "trusted"
    [(listed_entry, version, _)] = await listed(ctx)
    assert (listed_entry, version) == (entry, 4)
    types = await ctx.pool.fetch(
        "SELECT type, metadata::text AS metadata FROM events ORDER BY position"
    )
    assert [r["type"] for r in types if r["type"].startswith("issuer.")] == [
        "issuer.trusted",
        "issuer.updated",
        "issuer.removed",
        "issuer.trusted",
    ]
    assert all('"admin"' in r["metadata"] for r in types if r["type"].startswith("issuer."))


async def test_two_operators_changing_one_entry_at_once_both_land(ctx: Context) -> None:
    a = TrustedIssuer(issuer=IDP, algorithms=("ES256",))
    b = TrustedIssuer(issuer=IDP, algorithms=("EdDSA",))
    await asyncio.gather(trust(ctx, a, OPERATOR), trust(ctx, b, OPERATOR))
    changes = await ctx.pool.fetch(
        "SELECT type, stream_version FROM events WHERE type LIKE 'issuer.%' ORDER BY position"
    )
    assert [(r["type"], r["stream_version"]) for r in changes] == [
        ("issuer.trusted", 1),
        ("issuer.updated", 2),
    ]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (TrustedIssuer(issuer="http://idp.example"), "issuer"),
        (TrustedIssuer(issuer="https://idp.example?x=1"), "issuer"),
        (TrustedIssuer(issuer=IDP, jwks_uri="ftp://idp.example/k"), "jwks_uri"),
        (TrustedIssuer(issuer=IDP, algorithms=("HS256",)), "algorithms"),
        (TrustedIssuer(issuer=IDP, algorithms=("none",)), "algorithms"),
        (TrustedIssuer(issuer=IDP, algorithms=()), "algorithms"),
        (TrustedIssuer(issuer="http://127.0.0.1:9/"), "issuer"),
    ],
)
def test_unsafe_entries_are_refused_naming_the_field(entry: TrustedIssuer, field: str) -> None:
    with pytest.raises(BadEntry, match=f"^{field}:"):
        check_entry(entry, allow_loopback_http=False)


def test_loopback_http_is_allowed_only_when_asked() -> None:
    entry = TrustedIssuer(issuer="http://127.0.0.1:8123")
    loopback = policy_of(LOOPBACK_ALLOWED)
    assert check_entry(entry, allow_loopback_http=True, outbound=loopback) == entry
    with pytest.raises(BadEntry):
        check_entry(
            TrustedIssuer(issuer="http://192.0.2.1:8123"), allow_loopback_http=True,
            outbound=loopback,
        )  # fmt: skip


async def test_operator_revokes_one_credential_with_a_note(ctx: Context) -> None:
    first = await register_anonymous(ctx, "api_key", AGENT)
    second = await register_anonymous(ctx, "api_key", AGENT)
    assert first.credential is not None
    assert second.credential is not None
    row = await ctx.pool.fetchrow(
        "SELECT credential_id FROM credentials WHERE token_hash = $1",
        token_hash(first.credential),
    )
    assert row is not None
    revoked = await revoke(ctx, "credential", row["credential_id"], OPERATOR, "leaked in a log")
    assert revoked.credential_ids == (row["credential_id"],)
    rows = await ctx.pool.fetch("SELECT token_hash, status FROM credentials")
    statuses = {row["token_hash"]: row["status"] for row in rows}
    assert statuses[token_hash(first.credential)] == "revoked"
    assert statuses[token_hash(second.credential)] == "active"
    [event] = await _events(ctx, "credential.revoked")
    assert '"operator"' in event["data"]
    assert "leaked in a log" in event["data"]
    assert '"admin"' in event["metadata"]
    again = await revoke(ctx, "credential", row["credential_id"], OPERATOR, None)
    assert again.count == 0
    assert len(await _events(ctx, "credential.revoked")) == 1


async def test_revoking_a_registration_ends_its_key(ctx: Context) -> None:
    reg = await register_anonymous(ctx, "api_key", AGENT)
    revoked = await revoke(ctx, "registration", reg.registration_id, OPERATOR, None)
    assert revoked.count == 1
    assert (
        await ctx.pool.fetchval(
            "SELECT end_reason FROM credentials WHERE registration_id = $1", reg.registration_id
        )
        == "operator"
    )


async def test_unknown_targets_revoke_nothing_and_write_nothing(ctx: Context) -> None:
    head = await ctx.store.head_position()
    for scope in SCOPES:
        assert (await revoke(ctx, scope, "nope", OPERATOR, None)).count == 0
    assert await ctx.store.head_position() == head

"""The trust list: operators add, change and remove agent providers; ID-JAG checks read it.

Every change is an event on the issuer's own stream, appended with its expected version, so
two operators changing one entry at once cannot lose either change silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg

from events.envelope import Metadata
from events.issuer import STREAM_TYPE, IssuerEvent
from events.ledger import LEDGER
from events.sql import load_queries
from service.commands.coalesced import Coalesced
from service.commands.context import Caller, Change, Context, retrying
from service.commands.delegation_head import DelegationHead, HeadAhead
from service.domain.trust_list import (
    IssuerState,
    NotTrusted,
    decide_remove,
    decide_trust,
    fold_issuer,
    issuer_stream_id,
)
from service.outbound.policy import OutboundPolicy, policy_of
from service.providers.trust import ALGORITHMS, TrustedIssuer
from service.settings import Settings

Q = load_queries("projections", "issuers.sql")
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
Outcome = Literal["trusted", "updated", "unchanged", "removed"]


class BadEntry(ValueError):
    """A trust-list entry that cannot be accepted; the message names the field."""


@dataclass(frozen=True, slots=True)
class TrustChange:
    entry: TrustedIssuer
    outcome: Outcome
    version: int


def check_entry(
    entry: TrustedIssuer, *, allow_loopback_http: bool, outbound: OutboundPolicy | None = None
) -> TrustedIssuer:
    """Refuse what would make the entry unsafe or unusable, before any event is written.

    The keys URL (the pinned `jwks_uri`, else the one derived from `issuer`) is what the
    service will fetch: a literal address or `localhost` there that `outbound`
    (AUTHLEDGER_OUTBOUND_ALLOW; default: public addresses only) does not admit is refused
    now. Names are checked on what they resolve to, when the keys are fetched."""
    _check_url("issuer", entry.issuer, allow_loopback_http)
    if entry.jwks_uri is not None:
        _check_url("jwks_uri", entry.jwks_uri, allow_loopback_http)
    keys_field = "issuer" if entry.jwks_uri is None else "jwks_uri"
    host = urlsplit(entry.keys_url).hostname or ""
    refused = (outbound or OutboundPolicy()).host_refusal(host)
    if refused is not None:
        raise BadEntry(f"{keys_field}: {refused}; the keys are fetched from public addresses "
                       "only (AUTHLEDGER_OUTBOUND_ALLOW lists exceptions)")  # fmt: skip
    for client_id in entry.client_ids:
        _check_url("client_ids", client_id, allow_loopback_http)
    if not entry.algorithms:
        raise BadEntry("algorithms: at least one is needed")
    unknown = sorted(set(entry.algorithms) - set(ALGORITHMS))
    if unknown:
        allowed = ", ".join(ALGORITHMS)
        raise BadEntry(f"algorithms: {', '.join(unknown)} not allowed (only {allowed})")
    if entry.display_name is not None and not 0 < len(entry.display_name) <= 200:
        raise BadEntry("display_name: 1 to 200 characters")
    return entry


def requested_entry(
    settings: Settings,
    *,
    issuer: str,
    jwks_uri: str | None,
    algorithms: Sequence[str],
    display_name: str | None,
    link_by_verified_email: bool,
    client_ids: Sequence[str],
    required_amr: Sequence[str],
) -> TrustedIssuer:
    """The entry an operator asks for (admin API or CLI), every algorithm of ALGORITHMS when
    none is named, checked by `check_entry` with this deployment's outbound rules."""
    entry = TrustedIssuer(
        issuer=issuer,
        jwks_uri=jwks_uri,
        algorithms=tuple(algorithms) if algorithms else ALGORITHMS,
        display_name=display_name,
        link_by_verified_email=link_by_verified_email,
        client_ids=tuple(client_ids),
        required_amr=tuple(required_amr),
    )
    return check_entry(
        entry,
        allow_loopback_http=settings.jwks_allow_loopback_http,
        outbound=policy_of(settings.outbound_allow),
    )


def _check_url(field: str, value: str, allow_loopback_http: bool) -> None:
    if len(value) > 2048:
        raise BadEntry(f"{field}: longer than 2048 characters")
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. a bracketed host that is no IP address (was a 500)
        raise BadEntry(f"{field}: not a valid URL") from None
    if not parts.hostname or parts.query or parts.fragment or parts.username:
        raise BadEntry(f"{field}: must be an absolute URL without query, fragment or user")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and allow_loopback_http and parts.hostname in LOOPBACK:
        return
    raise BadEntry(f"{field}: must use https")


async def _state(ctx: Context, issuer: str) -> IssuerState | None:
    recorded = await ctx.store.read_stream(ctx.stream(STREAM_TYPE, issuer_stream_id(issuer)))
    events: list[tuple[IssuerEvent, int]] = [
        (LEDGER.decode(r), r.stream_version)  # type: ignore[misc]
        for r in recorded
    ]
    return fold_issuer(events)


async def trust(ctx: Context, entry: TrustedIssuer, caller: Caller) -> TrustChange:
    """Add `entry` to the trust list, or give an entry already there these terms."""

    async def attempt() -> TrustChange:
        state = await _state(ctx, entry.issuer)
        events = decide_trust(state, entry)
        version = state.version if state is not None else 0
        if not events:
            return TrustChange(entry, "unchanged", version)
        stream = ctx.stream(STREAM_TYPE, issuer_stream_id(entry.issuer))
        await ctx.record(
            [Change(stream, version, events)], metadata=_metadata(caller), now=ctx.clock.now()
        )
        renewed = state is None or not state.trusted
        return TrustChange(entry, "trusted" if renewed else "updated", version + 1)

    return await retrying(attempt)


async def distrust(ctx: Context, issuer: str, caller: Caller, reason: str | None) -> TrustChange:
    """Remove `issuer`: its ID-JAGs and logout tokens are refused from now on. Raises
    NotTrusted when it is not on the list."""

    async def attempt() -> TrustChange:
        state = await _state(ctx, issuer)
        events = decide_remove(state, reason)
        if state is None:  # decide_remove refused already; this is for the type checker
            raise NotTrusted(issuer)
        stream = ctx.stream(STREAM_TYPE, issuer_stream_id(issuer))
        await ctx.record(
            [Change(stream, state.version, events)],
            metadata=_metadata(caller),
            now=ctx.clock.now(),
        )
        return TrustChange(state.entry, "removed", state.version + 1)

    return await retrying(attempt)


async def lookup(ctx: Context, issuer: str) -> TrustedIssuer | None:
    """The entry for `issuer` if it is trusted now (read per check, so a removal made by any
    replica applies to the next assertion)."""
    entry, _ = await lookup_with_head(ctx, issuer, None)
    return entry


TrustKey = tuple[str, str, str | None]  # a caller's tenant, issuer and delegation (or none)


async def lookup_with_head(
    ctx: Context, issuer: str, delegation_id: str | None
) -> tuple[TrustedIssuer | None, HeadAhead]:
    """`lookup`, and the head of `delegation_id` (if one is named) and its user's data key read
    in the same round trip (see HeadAhead); for an issuer not trusted now, nothing is read
    ahead. The query is shared with the process's other callers of the moment (Coalesced)."""
    reads = ctx.coalesced("trust_list.lookups_with_heads", lambda: trust_reads(ctx.pool))
    row = await reads.get((ctx.tenant.tenant_id, issuer, delegation_id))
    if row is None:
        return None, HeadAhead()
    head = (
        None
        if row["head_user_id"] is None
        else DelegationHead(
            str(row["head_user_id"]), int(row["head_version"]), int(row["head_generation"])
        )
    )
    ahead = (
        HeadAhead()
        if delegation_id is None
        else HeadAhead(delegation_id, head, row["head_wrapped_key"], bool(row["head_key_settled"]))
    )
    return _entry(row), ahead


def trust_reads(pool: asyncpg.Pool) -> Coalesced[TrustKey, asyncpg.Record | None]:
    """`lookups_with_heads` for the callers of a moment: each caller's row, or None when its
    issuer is not trusted now (bench/identity_floor.py reads through it too)."""

    async def fetch(keys: Sequence[TrustKey]) -> list[asyncpg.Record | None]:
        tenants, issuers, delegations = zip(*keys, strict=True)
        rows = await pool.fetch(
            Q["lookups_with_heads"], list(tenants), list(issuers), list(delegations)
        )
        found: list[asyncpg.Record | None] = [None] * len(keys)
        for row in rows:
            found[row["n"] - 1] = row
        return found

    return Coalesced(fetch)


async def listed(ctx: Context) -> list[tuple[TrustedIssuer, int, datetime]]:
    rows = await ctx.pool.fetch(Q["listed"], ctx.tenant.tenant_id)
    return [(_entry(r), r["version"], r["updated_at"]) for r in rows]


def _entry(row: Any) -> TrustedIssuer:
    return TrustedIssuer(
        issuer=row["issuer"],
        jwks_uri=row["jwks_uri"],
        algorithms=tuple(row["algorithms"]),
        display_name=row["display_name"],
        link_by_verified_email=row["link_by_verified_email"],
        client_ids=tuple(row["client_ids"]),
        required_amr=tuple(row["required_amr"]),
    )


def _metadata(caller: Caller) -> Metadata:
    """Operators' changes carry who and which request; their IP is not a data subject's."""
    return Metadata(correlation_id=caller.request_id, actor=caller.actor)


def as_json(entry: TrustedIssuer) -> dict[str, Any]:
    return {
        "issuer": entry.issuer,
        "jwks_uri": entry.jwks_uri,
        "algorithms": list(entry.algorithms),
        "display_name": entry.display_name,
        "link_by_verified_email": entry.link_by_verified_email,
        "client_ids": list(entry.client_ids),
        "required_amr": list(entry.required_amr),
    }

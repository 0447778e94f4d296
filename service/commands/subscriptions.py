"""Webhook subscriptions: operators create, change, remove and replay them.

Each command reads the subscription's state from its read model (the inline projection is the
fold of the stream, written in the append's transaction, so it is never behind a committed
event; the stream itself grows with every delivery attempt, so it is not re-read per
command), decides, and appends at the version it read. The push worker appends to the same
stream, so a command racing a delivery result is decided again on the new state
(`retrying`); whichever lands second sees the first.

Checks made before anything is written (`check_terms`): the URL is absolute https (plain
http only to a loopback host, and only when `AUTHLEDGER_JWKS_ALLOW_LOOPBACK_HTTP` allows it,
as for agent providers), without user info, query or fragment: a URL goes into the log in
plain text, so a secret belongs in `secret`, which is sealed. Its host is no address literal
(or `localhost`) that `outbound` (AUTHLEDGER_OUTBOUND_ALLOW) does not admit: pushes go to
public addresses only, checked again on the resolved address at every connection
(service.push.delivery; security finding 7). The secret must be an RFC 6750
token of 16 to 512 characters; event types are `credential.revoked` / `credential.expired`;
reasons are short codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from msgspec import UNSET, UnsetType

from events.catalogue import Event
from events.envelope import Metadata
from events.ids import random_token
from events.sql import load_queries
from events.subscription import STREAM_TYPE, EventType
from service.commands.context import Caller, Change, Context, retrying
from service.domain.subscriptions import (
    EVENT_TYPES,
    Subscription,
    SubscriptionNotFound,
    Terms,
    decide_create,
    decide_remove,
    decide_replay,
    decide_update,
)
from service.outbound.policy import OutboundPolicy
from service.push.secrets import BEARER_SECRET, seal_secret

Q = load_queries("projections", "subscriptions.sql")
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_REASON = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
MAX_REASONS = 16


class BadSubscription(ValueError):
    """Terms that cannot be accepted; the message names the field, never the secret."""


@dataclass(frozen=True, slots=True)
class Request:
    """A new subscription as the operator asks for it (the secret still plain)."""

    url: str
    audience: str | None = None
    secret: str | None = None
    event_types: tuple[str, ...] = EVENT_TYPES
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Patch:
    """Changes to a subscription: UNSET keeps a field; `secret=None` removes the secret."""

    url: str | UnsetType = UNSET
    audience: str | UnsetType = UNSET
    secret: str | UnsetType | None = UNSET
    event_types: tuple[str, ...] | UnsetType = UNSET
    reasons: tuple[str, ...] | UnsetType = UNSET


def new_subscription_id() -> str:
    """`sub_` + 22 base64url characters (16 random bytes)."""
    return random_token("sub_", 16)


def check_terms(
    url: str,
    audience: str,
    secret: str | None,
    event_types: tuple[str, ...],
    reasons: tuple[str, ...],
    *,
    allow_loopback_http: bool,
    outbound: OutboundPolicy | None = None,
) -> tuple[EventType, ...]:
    """Refuse what would make the subscription unsafe or unusable (see the module
    docstring; `outbound` None: public addresses only). Returns the event types, typed."""
    _check_url(url, allow_loopback_http, outbound or OutboundPolicy())
    if not 0 < len(audience) <= 2048:
        raise BadSubscription("audience: 1 to 2048 characters")
    if secret is not None and not (
        16 <= len(secret) <= 512 and BEARER_SECRET.fullmatch(secret) is not None
    ):
        raise BadSubscription("secret: 16 to 512 characters of an RFC 6750 bearer token")
    if not event_types or len(set(event_types)) != len(event_types):
        raise BadSubscription("event_types: at least one, each once")
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise BadSubscription(f"event_types: only {', '.join(EVENT_TYPES)}")
    if len(reasons) > MAX_REASONS or len(set(reasons)) != len(reasons):
        raise BadSubscription(f"reasons: at most {MAX_REASONS}, each once")
    if any(_REASON.fullmatch(reason) is None for reason in reasons):
        raise BadSubscription("reasons: short codes such as operator, logout")
    return tuple(t for t in EVENT_TYPES if t in event_types)


def _check_url(url: str, allow_loopback_http: bool, outbound: OutboundPolicy) -> None:
    if len(url) > 2048:
        raise BadSubscription("url: longer than 2048 characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a malformed port
    except ValueError:
        raise BadSubscription("url: not a valid URL") from None
    if not parts.hostname or parts.query or parts.fragment or parts.username or "?" in url:
        raise BadSubscription("url: an absolute URL without user, query or fragment")
    refused = outbound.host_refusal(parts.hostname)
    if refused is not None:
        raise BadSubscription(f"url: {refused}; pushes go to public addresses only "
                              "(AUTHLEDGER_OUTBOUND_ALLOW lists exceptions)")  # fmt: skip
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and allow_loopback_http and parts.hostname in LOOPBACK:
        return
    raise BadSubscription("url: must use https")


async def create(
    ctx: Context,
    request: Request,
    caller: Caller,
    *,
    from_position: int | None,
    allow_loopback_http: bool,
    outbound: OutboundPolicy | None = None,
) -> asyncpg.Record:
    """A new subscription, sent what the log records after `from_position` (default: its
    head now, i.e. only what comes next). Returns its read-model row."""
    audience = request.audience or request.url
    types = check_terms(
        request.url, audience, request.secret, request.event_types, request.reasons,
        allow_loopback_http=allow_loopback_http, outbound=outbound,
    )  # fmt: skip
    subscription_id = new_subscription_id()
    sealed = (
        seal_secret(ctx.sealer.keys, subscription_id, request.secret)
        if request.secret is not None
        else None
    )
    terms = Terms(request.url, audience, sealed, types, request.reasons)
    head = await ctx.store.head_position()
    events = decide_create(
        subscription_id, terms, head if from_position is None else from_position, head
    )
    stream = ctx.stream(STREAM_TYPE, subscription_id)
    await ctx.record([Change(stream, 0, events)], metadata=_metadata(caller), now=ctx.clock.now())
    return await _row(ctx, subscription_id)


async def update(
    ctx: Context,
    subscription_id: str,
    patch: Patch,
    caller: Caller,
    *,
    allow_loopback_http: bool,
    outbound: OutboundPolicy | None = None,
) -> asyncpg.Record:
    """Change some terms; the cursor and the delivery state stay as they are."""

    async def attempt() -> asyncpg.Record:
        state = await _state(ctx, subscription_id)
        current = state.terms if state is not None and state.status != "removed" else None
        if current is None:
            raise SubscriptionNotFound(subscription_id)
        url = current.url if isinstance(patch.url, UnsetType) else patch.url
        audience = current.audience if isinstance(patch.audience, UnsetType) else patch.audience
        secret = None if isinstance(patch.secret, UnsetType) else patch.secret
        types = (
            current.event_types if isinstance(patch.event_types, UnsetType) else patch.event_types
        )
        reasons = current.reasons if isinstance(patch.reasons, UnsetType) else patch.reasons
        typed = check_terms(
            url, audience, secret, types, reasons,
            allow_loopback_http=allow_loopback_http, outbound=outbound,
        )  # fmt: skip
        if isinstance(patch.secret, UnsetType):
            sealed = current.secret_sealed
        elif patch.secret is None:
            sealed = None
        else:
            sealed = seal_secret(ctx.sealer.keys, subscription_id, patch.secret)
        events = decide_update(state, Terms(url, audience, sealed, typed, reasons))
        await _record(ctx, state, events, caller)
        return await _row(ctx, subscription_id)

    return await retrying(attempt)


async def remove(
    ctx: Context, subscription_id: str, caller: Caller, reason: str | None
) -> asyncpg.Record:
    async def attempt() -> asyncpg.Record:
        state = await _state(ctx, subscription_id)
        await _record(ctx, state, decide_remove(state, reason), caller)
        return await _row(ctx, subscription_id)

    return await retrying(attempt)


async def replay(
    ctx: Context, subscription_id: str, caller: Caller, from_position: int | None
) -> asyncpg.Record:
    """Deliver again everything after `from_position` (None: resume at the cursor)."""

    async def attempt() -> asyncpg.Record:
        state = await _state(ctx, subscription_id)
        head = await ctx.store.head_position()
        await _record(ctx, state, decide_replay(state, from_position, head), caller)
        return await _row(ctx, subscription_id)

    return await retrying(attempt)


async def find(ctx: Context, subscription_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await ctx.pool.fetchrow(
        Q["one"], ctx.tenant.tenant_id, subscription_id
    )
    return row


async def listed(ctx: Context) -> list[asyncpg.Record]:
    return list(await ctx.pool.fetch(Q["listed"], ctx.tenant.tenant_id))


def state_of(row: Any) -> Subscription:
    """The domain state held by a `subscriptions` row."""
    terms = Terms(
        url=row["url"],
        audience=row["audience"],
        secret_sealed=row["secret_sealed"],
        event_types=tuple(row["event_types"]),
        reasons=tuple(row["reasons"]),
    )
    return Subscription(
        subscription_id=row["subscription_id"],
        terms=terms,
        status=row["status"],
        cursor=row["cursor_position"],
        version=row["version"],
        attempts=row["attempts"],
        head_position=row["head_position"],
        head_since=row["head_since"],
        next_attempt_at=row["next_attempt_at"],
    )


async def _state(ctx: Context, subscription_id: str) -> Subscription | None:
    row = await find(ctx, subscription_id)
    return None if row is None else state_of(row)


async def _record(
    ctx: Context, state: Subscription | None, events: list[Event], caller: Caller
) -> None:
    if state is None or not events:
        return
    stream = ctx.stream(STREAM_TYPE, state.subscription_id)
    await ctx.record(
        [Change(stream, state.version, events)], metadata=_metadata(caller), now=ctx.clock.now()
    )


async def _row(ctx: Context, subscription_id: str) -> asyncpg.Record:
    row = await find(ctx, subscription_id)
    if row is None:  # written in this very transaction's projection; unreachable
        raise SubscriptionNotFound(subscription_id)
    return row


def _metadata(caller: Caller) -> Metadata:
    return Metadata(correlation_id=caller.request_id, actor=caller.actor)

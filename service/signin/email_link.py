"""Signing in by a mailed link (contract V3): the person types an address at POST /login and
proves it by opening the link mailed to it.

`send_link` makes the link's id `sgn_…` (a fresh data subject: the address is sealed under
a key of its own, so erasing the person, or the link's end, destroys it alone) and its token
`lgt_…` (24 bytes from the CSPRNG; only its SHA-256 is stored), and in one transaction stores
the subject key, the `sign_in_links` row and the outbox row of kind `sign_in` the mailer
sends, pruning up to 100 links whose time is over on the way. No event: a sign-in changes no
state of the ledger, and a stranger typing addresses must not grow the log (security finding
1); the claim it enables records how the person signed in.

`peek_link` reads a link without touching it (GET /login/email: link scanners consume
nothing); `use_link` marks it used with one `UPDATE … WHERE used_at IS NULL AND expires_at >
now RETURNING`, so of two racing posts exactly one signs in. `forget_links` is erasure's part.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from events.ids import random_token
from events.sql import load_queries
from service.crypto.pii import Db, Sealer
from service.crypto.tokens import token_hash
from service.mail.outbox import enqueue_sign_in_mail

Q = load_queries("service.signin", "email_link.sql")
LINK_ID_PREFIX = "sgn_"
TOKEN_PREFIX = "lgt_"  # noqa: S105 - a prefix, not a secret
MAX_TOKEN_CHARS = 64
LinkState = Literal["unknown", "used", "expired"]


def new_link_id() -> str:
    """`sgn_` + 22 base64url characters (16 random bytes): the link, its mail, its subject."""
    return random_token(LINK_ID_PREFIX, 16)


def new_link_token() -> str:
    """`lgt_` + 32 base64url characters (24 random bytes): the mailed link's token."""
    return random_token(TOKEN_PREFIX, 24)


class LinkRefused(Exception):
    """The link is unknown (or its address erased), already used, or past its time."""

    def __init__(self, state: LinkState) -> None:
        super().__init__(f"the sign-in link is {state}")
        self.state: LinkState = state


@dataclass(frozen=True, slots=True)
class SentLink:
    link_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Link:
    """A live link, opened: who it signs in and where it returns to."""

    link_id: str
    email: str
    return_to: str
    expires_at: datetime

    def __repr__(self) -> str:  # keep the address out of tracebacks and logs
        return f"Link(link_id={self.link_id!r})"


async def send_link(
    pool: asyncpg.Pool,
    sealer: Sealer,
    *,
    secret_key: str | bytes,
    tenant_id: str,
    email: str,
    return_to: str,
    now: datetime,
    ttl: timedelta,
) -> SentLink:
    """Store a new link for `email` back to `return_to` and queue its mail, in one transaction."""
    link_id, token = new_link_id(), new_link_token()
    subject = sealer.fresh(link_id)
    sealed = subject.seal(email)
    expires_at = now + ttl
    statement, arguments = subject.write
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval(Q["prune"], now)
        await conn.execute(statement, *arguments)
        await conn.execute(
            Q["insert"], link_id, tenant_id, token_hash(token), sealed,
            sealer.blind_index(email), return_to, now, expires_at,
        )  # fmt: skip
        await enqueue_sign_in_mail(
            conn, secret_key=secret_key, tenant_id=tenant_id, link_id=link_id,
            recipient_sealed=sealed, link_token=token, link_expires_at=expires_at, now=now,
        )  # fmt: skip
    sealer.remember(subject)
    return SentLink(link_id, expires_at)


def _hash_of(token: object) -> str | None:
    """The stored hash of a token that could be one of ours, else None (no query made)."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        return None
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return None
    return token_hash(token)


async def _opened(pool: asyncpg.Pool, sealer: Sealer, row: asyncpg.Record) -> Link:
    email = await sealer.open(pool, row["email_sealed"])
    if email is None:  # the person was erased while the link lived
        raise LinkRefused("unknown")
    return Link(row["link_id"], email, row["return_to"], row["expires_at"])


async def peek_link(
    pool: asyncpg.Pool, sealer: Sealer, *, tenant_id: str, token: object, now: datetime
) -> Link:
    """The live link `token` names, untouched; LinkRefused otherwise."""
    hashed = _hash_of(token)
    row = None if hashed is None else await pool.fetchrow(Q["peek"], tenant_id, hashed)
    if row is None:
        raise LinkRefused("unknown")
    if row["used_at"] is not None:
        raise LinkRefused("used")
    if row["expires_at"] <= now:
        raise LinkRefused("expired")
    return await _opened(pool, sealer, row)


async def use_link(
    pool: asyncpg.Pool, sealer: Sealer, *, tenant_id: str, token: object, now: datetime
) -> Link:
    """The link `token` names, used now (once, whoever races); LinkRefused otherwise."""
    hashed = _hash_of(token)
    if hashed is None:
        raise LinkRefused("unknown")
    row = await pool.fetchrow(Q["use"], tenant_id, hashed, now)
    if row is None:
        await peek_link(pool, sealer, tenant_id=tenant_id, token=token, now=now)
        raise LinkRefused("used")  # it was live a moment ago: a racing post took it
    return await _opened(pool, sealer, row)


async def links_of(conn: Db, *, tenant_id: str, indexes: list[str]) -> tuple[str, ...]:
    """The ids of the links made for the addresses whose blind `indexes` are given."""
    return tuple(row["link_id"] for row in await conn.fetch(Q["of_addresses"], tenant_id, indexes))


async def forget_links(
    conn: Db, sealer: Sealer, *, tenant_id: str, indexes: list[str], now: datetime
) -> tuple[str, ...]:
    """Erasure: delete the links (and their queued mail) of the addresses whose blind
    `indexes` are given, and destroy their subject keys; the link ids."""
    rows = await conn.fetch(Q["forget"], tenant_id, indexes)
    links = tuple(row["link_id"] for row in rows)
    for link_id in links:
        await sealer.erase(conn, link_id, now=now)
    return links

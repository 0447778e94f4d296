"""Erasing a person (issue 6, crypto-shredding): destroy the data keys their personal fields
were sealed under, so every copy — in the log, the read models, the outbox, backups — becomes
unreadable, while the events and the hash chain stay exactly as they were.

A person is found by user id or by address (blind index). Their data subjects are their
users, every registration they claimed or whose current claim attempt names their address
(erased as a whole: `registration.erased`), and every claim attempt that ever named their
address (`attempt_addresses`, security issue 12 finding 4). An attempt seals its address, its
mail and the client addresses of the calls that started it or asked for its codes under a key
of its own, so an earlier attempt of someone else's registration is erased alone
(`claim.attempts_erased`): the registration, its agent's key and its other attempts (another
person's) stay. Attempts older than that key (sealed under the registration's) take their
registration with them. The erased attempts' outbox rows are deleted. So are the address's
e-mail sign-in links of the v0.6 pages (`sign_in_links`, no event behind them) with their
mail, and their `sgn_…` keys are destroyed; a person known only by such links is erased
without an event.

One transaction records the events, revokes every credential still active for their users (an
erased user can no longer be acted for; an unclaimed registration whose attempt merely named
the address keeps its agent's key, its attempt void), and destroys the keys; if any part
fails, nothing is erased. Other service processes forget cached keys when they read the
events; every process drops cached keys after a minute anyway.

What stays: the events, their chain, and the blind index (an HMAC under the server secret) of
the address in the `user.created` / `claim.attempt_started` payloads. The index cannot be
reversed; whoever holds the server secret can still test a guessed address against it. The
read models drop it, so an erased address finds no one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import asyncpg

from events.catalogue import Event, event_tag
from events.credential import STREAM_TYPE as CREDENTIAL
from events.credential import CredentialRevoked
from events.envelope import Metadata, RecordedEvent
from events.ledger import LEDGER
from events.registration import STREAM_TYPE as REGISTRATION
from events.registration import ClaimAttemptsErased, RegistrationErased
from events.sql import load_queries
from events.store import ANY_VERSION
from events.user import STREAM_TYPE as USER
from events.user import UserErased
from service.commands import registration_state
from service.commands.context import Caller, Change, Context, retrying
from service.signin.email_link import forget_links, links_of

USER_Q = load_queries("projections", "users.sql")
REG_Q = load_queries("projections", "registrations.sql")
CRED_Q = load_queries("projections", "credentials.sql")
ADDRESS_Q = load_queries("projections", "attempt_addresses.sql")
Q = load_queries("service.commands", "erasure.sql")
ALL = 1_000_000  # no person has more credentials than this


class NobodyToErase(LookupError):
    """No user, registration or claim attempt holds data of that person."""


@dataclass(frozen=True, slots=True)
class Erasure:
    users: tuple[str, ...]
    registrations: tuple[str, ...]  # erased as a whole
    revoked: tuple[str, ...]
    attempts: tuple[str, ...] = ()  # claim attempts whose own keys were destroyed
    sign_in_links: tuple[str, ...] = ()  # the v0.6 pages' sign-in links, deleted, keys destroyed

    @property
    def subjects(self) -> tuple[str, ...]:
        return self.users + self.registrations + self.attempts + self.sign_in_links


@dataclass(frozen=True, slots=True)
class Found:
    """The person's data subjects, before anything is erased."""

    users: tuple[str, ...]
    registrations: tuple[str, ...]
    attempts: dict[str, tuple[str, ...]]  # registration -> its attempts with keys of their own
    indexes: tuple[str, ...] = ()  # the person's addresses' blind indexes
    sign_in_links: tuple[str, ...] = ()


async def _find(ctx: Context, user_id: str | None, email: str | None) -> Found:
    tenant = ctx.tenant.tenant_id
    if email is not None:
        indexes = [ctx.sealer.blind_index(email)]
        rows = await ctx.pool.fetch(USER_Q["by_email_any"], tenant, indexes[0])
    else:
        rows = await ctx.pool.fetch(USER_Q["one"], tenant, user_id)
        indexes = [r["email_index"] for r in rows if r["email_index"] is not None]
    users = tuple(r["user_id"] for r in rows)
    whole = {
        r["registration_id"]
        for r in await ctx.pool.fetch(REG_Q["of_person"], tenant, list(users), indexes)
    }
    attempts: dict[str, list[str]] = {}
    for row in await ctx.pool.fetch(ADDRESS_Q["naming"], tenant, indexes):
        rid = row["registration_id"]
        if row["subject_id"] == rid:  # sealed under the registration's key (before 0017)
            whole.add(rid)
        else:
            attempts.setdefault(rid, []).append(row["attempt_id"])
    links = await links_of(ctx.pool, tenant_id=tenant, indexes=indexes)
    by_registration = {r: tuple(a) for r, a in attempts.items()}
    return Found(users, tuple(sorted(whole)), by_registration, tuple(indexes), links)


async def erase_person(
    ctx: Context,
    caller: Caller,
    *,
    user_id: str | None = None,
    email: str | None = None,
    reason: str | None = None,
) -> Erasure:
    if (user_id is None) == (email is None):
        raise ValueError("name the person by exactly one of user_id and email")
    tenant = ctx.tenant.tenant_id

    async def attempt() -> Erasure:
        found = await _find(ctx, user_id, email)
        users, registrations = found.users, found.registrations
        if not users and not registrations and not found.attempts and not found.sign_in_links:
            raise NobodyToErase(
                "no user, registration, claim attempt or sign-in link holds that person's data"
            )
        credentials = [
            row
            for one in users
            for row in await ctx.pool.fetch(CRED_Q["active_of_user"], tenant, one, ALL)
        ]
        attempts = tuple(a for r in sorted(found.attempts) for a in found.attempts[r])
        subjects = users + registrations + attempts
        user_erased = UserErased(subjects=subjects, reason=reason)
        ended = CredentialRevoked(reason="erased", note=reason)

        def registration_erased(rid: str) -> Event:
            if rid in registrations:
                return RegistrationErased(reason=reason, attempts=found.attempts.get(rid, ()))
            return ClaimAttemptsErased(attempt_ids=found.attempts[rid], reason=reason)

        touched = sorted({*registrations, *found.attempts})
        changes = [
            *(Change(ctx.stream(USER, u), ANY_VERSION, [user_erased]) for u in users),
            *(Change(ctx.stream(REGISTRATION, r), ANY_VERSION, [registration_erased(r)])
              for r in touched),
            *{row["credential_id"]: Change(
                ctx.stream(CREDENTIAL, row["credential_id"]), row["version"], [ended]
              ) for row in credentials}.values(),
        ]  # fmt: skip

        async def destroy_keys(conn: asyncpg.Connection) -> None:
            now = ctx.clock.now()
            for subject in subjects:
                await ctx.sealer.erase(conn, subject, now=now)
            await conn.execute(Q["forget_mail"], tenant, list(attempts))
            await registration_state.forget(conn, touched)
            links.extend(await forget_links(
                conn, ctx.sealer, tenant_id=tenant, indexes=list(found.indexes), now=now
            ))  # fmt: skip

        links: list[str] = []
        if changes:
            await ctx.record(
                changes,
                metadata=Metadata(correlation_id=caller.request_id, actor=caller.actor),
                now=ctx.clock.now(),
                also=destroy_keys,
            )
        else:  # sign-in links only: operational rows, no event to record
            async with ctx.pool.acquire() as held, held.transaction():
                await destroy_keys(cast(asyncpg.Connection, held))
        revoked = tuple(sorted({row["credential_id"] for row in credentials}))
        return Erasure(users, registrations, revoked, attempts, tuple(sorted(links)))

    return await retrying(attempt)


ERASURES = frozenset(
    event_tag(cls) for cls in (UserErased, RegistrationErased, ClaimAttemptsErased)
)


def erased_subjects(recorded: RecordedEvent) -> tuple[str, ...]:
    """The data subjects an erasure event destroyed the keys of (for the sealers of other
    processes, which hear of it on the event feed)."""
    event = LEDGER.decode(recorded)
    if isinstance(event, UserErased):
        return event.subjects
    if isinstance(event, ClaimAttemptsErased):
        return event.attempt_ids
    if isinstance(event, RegistrationErased):
        return (recorded.stream_id, *event.attempts)
    return ()

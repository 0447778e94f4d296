"""Erasing a person (issue 6, crypto-shredding): destroy the data keys their personal fields
were sealed under, so every copy — in the log, the read models, the outbox, backups — becomes
unreadable, while the events and the hash chain stay exactly as they were.

A person is found by user id or by address (blind index). Their data subjects are their
users and every registration that holds their data (claimed by them, or whose claim attempt
named their address). One transaction records `user.erased` / `registration.erased` for each,
revokes every credential still active for their users (an erased user can no longer be acted
for; an unclaimed registration whose attempt merely named the address keeps its agent's key,
its attempt void), and destroys the keys; if any part fails, nothing is erased. Other service
processes forget cached keys when they read the events; every process drops cached keys after
a minute anyway.

What stays: the events, their chain, and the blind index (an HMAC under the server secret) of
the address in the `user.created` / `claim.attempt_started` payloads. The index cannot be
reversed; whoever holds the server secret can still test a guessed address against it. The
read models drop it, so an erased address finds no one.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from events.catalogue import event_tag
from events.credential import STREAM_TYPE as CREDENTIAL
from events.credential import CredentialRevoked
from events.envelope import Metadata, RecordedEvent
from events.ledger import LEDGER
from events.registration import STREAM_TYPE as REGISTRATION
from events.registration import RegistrationErased
from events.sql import load_queries
from events.store import ANY_VERSION
from events.user import STREAM_TYPE as USER
from events.user import UserErased
from service.commands import registration_state
from service.commands.context import Caller, Change, Context, retrying

USER_Q = load_queries("projections", "users.sql")
REG_Q = load_queries("projections", "registrations.sql")
CRED_Q = load_queries("projections", "credentials.sql")
ALL = 1_000_000  # no person has more credentials than this


class NobodyToErase(LookupError):
    """No user and no registration holds data of that person."""


@dataclass(frozen=True, slots=True)
class Erasure:
    users: tuple[str, ...]
    registrations: tuple[str, ...]
    revoked: tuple[str, ...]

    @property
    def subjects(self) -> tuple[str, ...]:
        return self.users + self.registrations


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
        if email is not None:
            indexes = [ctx.sealer.blind_index(email)]
            rows = await ctx.pool.fetch(USER_Q["by_email_any"], tenant, indexes[0])
        else:
            rows = await ctx.pool.fetch(USER_Q["one"], tenant, user_id)
            indexes = [r["email_index"] for r in rows if r["email_index"] is not None]
        users = tuple(r["user_id"] for r in rows)
        registrations = tuple(
            r["registration_id"]
            for r in await ctx.pool.fetch(REG_Q["of_person"], tenant, list(users), indexes)
        )
        if not users and not registrations:
            raise NobodyToErase("no user or registration holds that person's data")
        credentials = [
            row
            for one in users
            for row in await ctx.pool.fetch(CRED_Q["active_of_user"], tenant, one, ALL)
        ]
        subjects = users + registrations
        user_erased = UserErased(subjects=subjects, reason=reason)
        registration_erased = RegistrationErased(reason=reason)
        ended = CredentialRevoked(reason="erased", note=reason)
        changes = [
            *(Change(ctx.stream(USER, u), ANY_VERSION, [user_erased]) for u in users),
            *(Change(ctx.stream(REGISTRATION, r), ANY_VERSION, [registration_erased])
              for r in registrations),
            *{row["credential_id"]: Change(
                ctx.stream(CREDENTIAL, row["credential_id"]), row["version"], [ended]
              ) for row in credentials}.values(),
        ]  # fmt: skip

        async def destroy_keys(conn: asyncpg.Connection) -> None:
            now = ctx.clock.now()
            for subject in subjects:
                await ctx.sealer.erase(conn, subject, now=now)
            await registration_state.forget(conn, list(registrations))

        await ctx.record(
            changes,
            metadata=Metadata(correlation_id=caller.request_id, actor=caller.actor),
            now=ctx.clock.now(),
            also=destroy_keys,
        )
        revoked = tuple(sorted({row["credential_id"] for row in credentials}))
        return Erasure(users, registrations, revoked)

    return await retrying(attempt)


ERASURES = frozenset(event_tag(cls) for cls in (UserErased, RegistrationErased))


def erased_subjects(recorded: RecordedEvent) -> tuple[str, ...]:
    """The data subjects an erasure event destroyed the keys of (for the sealers of other
    processes, which hear of it on the event feed)."""
    event = LEDGER.decode(recorded)
    return event.subjects if isinstance(event, UserErased) else (recorded.stream_id,)

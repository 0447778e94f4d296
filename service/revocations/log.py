"""Credential-ending events read from the log, as revocation messages (`subscriber.wire`).

Shared by the publisher (`workers/revocation_feed.py`) and `GET /admin/revocations`, so the
two say exactly the same thing: every claim is a function of the log alone (the ending event,
its credential's `credential.issued` and `credential.rescoped` events, the tenant's previous
ending event), except `iat`, the moment of signing.

Every `credential.revoked` and `credential.expired` counts, whoever recorded it: operators,
logout tokens, the expiry worker (expired credentials, and pre-claim keys of expired
registrations). A credential ends once: its stream's expected version makes a second ending
event fail to append, so the feed never announces the same credential twice from the log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from events.credential import CredentialExpired, CredentialIssued, CredentialRescoped
from events.credential import CredentialRevoked as Revoked
from events.envelope import RecordedEvent
from events.ledger import LEDGER
from events.sql import Conn, load_queries
from events.store import row_to_event
from subscriber.wire import CredentialKind, Revocation, hash_prefix

ENDING = ("credential.revoked", "credential.expired")
FACTS = ("credential.issued", "credential.rescoped")
Q = load_queries("service.revocations", "log.sql")


class MissingCredential(RuntimeError):
    """An ending event whose credential was never issued: the log is not what we think."""


@dataclass(frozen=True)
class Window:
    """Ending events after a position, in order, and the head they were read up to: every
    ending event at or below `through` is in `events` (or before `after`)."""

    head: int
    events: list[RecordedEvent]
    full: bool  # as many as asked for: more may follow

    @property
    def through(self) -> int:
        return self.events[-1].position if self.full else self.head


@dataclass(frozen=True)
class Facts:
    kind: CredentialKind
    token_hash: str
    registration_id: str | None
    user_id: str | None


async def ending_after(conn: Conn, after: int, limit: int, tenant: str | None = None) -> Window:
    """Up to `limit` ending events after `after` (of `tenant`, or of all), in log order."""
    if tenant is None:
        rows = await conn.fetch(Q["ending_after"], after, list(ENDING), limit)
    else:
        rows = await conn.fetch(Q["ending_after_of_tenant"], after, list(ENDING), limit, tenant)
    events = [row_to_event(row) for row in rows if row["position"] is not None]
    return Window(head=int(rows[0]["head"]), events=events, full=len(events) == limit)


async def previous_ending(conn: Conn, tenant: str, before: int) -> int:
    """The position of the tenant's last ending event before `before` (0: none)."""
    return int(await conn.fetchval(Q["previous_ending"], tenant, list(ENDING), before))


class Chain:
    """`previous_position` of each ending event, for events met in log order (a tenant's
    previous one is remembered, and asked of the database when it cannot be known)."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    async def previous(self, conn: Conn, event: RecordedEvent) -> int:
        last = self._last.get(event.tenant_id)
        if last is None or last >= event.position:  # first of its tenant, or read again
            last = await previous_ending(conn, event.tenant_id, event.position)
        self._last[event.tenant_id] = event.position
        return last


async def credential_facts(
    conn: Conn, events: Sequence[RecordedEvent]
) -> dict[tuple[str, str], Facts]:
    """What the messages say about each ending event's credential, from its stream."""
    keys = sorted({(e.tenant_id, e.stream_id) for e in events})
    rows = await conn.fetch(
        Q["credential_streams"], [k[0] for k in keys], [k[1] for k in keys], list(FACTS)
    )
    facts: dict[tuple[str, str], Facts] = {}
    for recorded in map(row_to_event, rows):
        key = (recorded.tenant_id, recorded.stream_id)
        event = LEDGER.decode(recorded)
        if isinstance(event, CredentialIssued):
            facts[key] = Facts(event.kind, event.token_hash, event.registration_id, event.user_id)
        elif isinstance(event, CredentialRescoped) and key in facts and event.user_id:
            old = facts[key]
            facts[key] = Facts(old.kind, old.token_hash, old.registration_id, event.user_id)
    return facts


def claims(
    event: RecordedEvent, facts: Facts, previous: int, *, issuer: str, now: datetime
) -> Revocation:
    ending = LEDGER.decode(event)
    if isinstance(ending, Revoked):
        reason = f"revoked:{ending.reason}"
    elif isinstance(ending, CredentialExpired):
        reason = "expired"
    else:  # the queries select only ENDING
        raise TypeError(f"{event.type} does not end a credential")
    return Revocation(
        iss=issuer,
        tenant=event.tenant_id,
        position=event.position,
        previous_position=previous,
        event_id=str(event.event_id),
        credential_id=event.stream_id,
        credential_kind=facts.kind,
        token_hash_prefix=hash_prefix(facts.token_hash),
        jti=event.stream_id if facts.kind == "access_token" else None,
        registration_id=facts.registration_id,
        user_id=facts.user_id,
        reason=reason,
        effective_at=event.occurred_at,
        iat=int(now.timestamp()),
    )


async def revocations(
    conn: Conn,
    events: Sequence[RecordedEvent],
    chain: Chain,
    *,
    issuer: str | Callable[[str], str],
    now: datetime,
) -> list[Revocation]:
    """The messages of `events` (ending events in log order); `issuer` is the `iss`, or gives
    it for a tenant id."""
    facts = await credential_facts(conn, events)
    found = []
    for event in events:
        fact = facts.get((event.tenant_id, event.stream_id))
        if fact is None:
            raise MissingCredential(f"{event.stream_id} ends at {event.position}, never issued")
        previous = await chain.previous(conn, event)
        iss = issuer(event.tenant_id) if callable(issuer) else issuer
        found.append(claims(event, fact, previous, issuer=iss, now=now))
    return found

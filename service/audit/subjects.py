"""What an audit is about: a subject (registration, credential, user, delegation, provider),
the streams that belong to it, and its events up to a bound.

Which streams belong to a subject (found through the read models, which only ever gain ids,
so the current ones cover every earlier instant; the log decides what was true when):

- a registration: its own stream and its credentials';
- a credential: its own stream and its registration's;
- a user: the user's stream, the registrations the user claimed (through the user's
  credentials), the user's credentials and delegations;
- a delegation: its own stream and the credentials issued through it (`delegation.used`);
- a provider (issuer URL, or its `iss_…` stream id): its trust-list stream, its delegations
  and their credentials.

A bound is a log position (`position`: what the log held once it reached that position),
an instant (`at`: the facts that had occurred by then, by their occurred-at), or both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

import asyncpg

from events.envelope import RecordedEvent
from events.sql import Conn, load_queries
from events.store import row_to_event
from service.domain.trust_list import issuer_stream_id

Q = load_queries("service.audit", "subjects.sql")
Kind = Literal["registration", "credential", "user", "delegation", "issuer"]
KINDS: tuple[Kind, ...] = get_args(Kind)
END_OF_LOG = (1 << 63) - 1
END_OF_TIME = datetime.max.replace(tzinfo=UTC)


class UnknownSubject(LookupError):
    """No such subject in this tenant's log."""


@dataclass(frozen=True, slots=True)
class Subject:
    kind: Kind
    id: str  # the stream id (`iss_…` for a provider)
    tenant_id: str
    issuer: str | None = None  # a provider's URL

    def as_json(self) -> dict[str, str]:
        named = {"kind": self.kind, "id": self.id, "tenant": self.tenant_id}
        return named if self.issuer is None else {**named, "issuer": self.issuer}


@dataclass(frozen=True, slots=True)
class Bound:
    position: int | None = None
    at: datetime | None = None

    def __post_init__(self) -> None:
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("an instant needs its time zone (e.g. 2026-11-01T10:00:00Z)")
        if self.position is not None and self.position < 0:
            raise ValueError("a position is 0 or more")

    def as_json(self) -> dict[str, object]:
        at = None if self.at is None else self.at.astimezone(UTC).isoformat()
        return {"position": self.position, "at": at}


async def resolve(db: Conn, tenant_id: str, kind: str, raw_id: str) -> Subject:
    """The subject named by `kind` and `raw_id`; UnknownSubject if its stream is empty."""
    if kind not in KINDS:
        raise UnknownSubject(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    issuer = None
    stream_id = raw_id
    if kind == "issuer":
        if raw_id.startswith("iss_") and "://" not in raw_id:
            issuer = await db.fetchval(Q["issuer_of_stream"], tenant_id, raw_id)
        else:
            issuer, stream_id = raw_id, issuer_stream_id(raw_id)
    if not await db.fetchval(Q["exists"], tenant_id, stream_id):
        raise UnknownSubject(f"no {kind} {raw_id} in tenant {tenant_id}")
    return Subject(kind, stream_id, tenant_id, issuer)


async def streams(db: Conn, subject: Subject) -> list[str]:
    """Every stream id of the subject, its own first."""
    t, own = subject.tenant_id, subject.id
    found: list[str] = [own]
    match subject.kind:
        case "registration":
            found += [r[0] for r in await db.fetch(Q["credentials_of_registration"], t, own)]
        case "credential":
            row = await db.fetchrow(Q["credential"], t, own)
            if row is not None and _has_stream(row):
                found.append(row["registration_id"])
        case "user":
            rows = await db.fetch(Q["credentials_of_user"], t, own)
            found += sorted({r["registration_id"] for r in rows if _has_stream(r)})
            found += [r["credential_id"] for r in rows]
            found += [r[0] for r in await db.fetch(Q["delegations_of_user"], t, own)]
        case "delegation":
            found += await _credentials_of(db, t, [own])
        case "issuer":
            rows = await db.fetch(Q["delegations_of_issuer"], t, subject.issuer)
            delegations = [r[0] for r in rows]
            found += delegations + await _credentials_of(db, t, delegations)
    return list(dict.fromkeys(found))


def _has_stream(row: asyncpg.Record) -> bool:
    """ID-JAG credentials name a registration id that has no stream of its own."""
    return bool(row["registration_id"]) and row["issued_via"] != "id_jag"


async def _credentials_of(db: Conn, tenant_id: str, delegations: list[str]) -> list[str]:
    if not delegations:
        return []
    rows = await db.fetch(Q["credentials_of_delegations"], tenant_id, delegations)
    return sorted(r[0] for r in rows)


async def read(
    db: Conn,
    tenant_id: str,
    stream_ids: list[str],
    bound: Bound,
    *,
    after: int = 0,
    limit: int | None = None,
) -> list[RecordedEvent]:
    """The streams' events within `bound`, in log order (after `after`, at most `limit`)."""
    rows = await db.fetch(
        Q["events"],
        tenant_id,
        stream_ids,
        END_OF_LOG if bound.position is None else bound.position,
        END_OF_TIME if bound.at is None else bound.at,
        after,
        limit,
    )
    return [row_to_event(r) for r in rows]


async def instant_of(db: Conn, bound: Bound, now: datetime) -> datetime:
    """The instant a bound stands for: `at`; else when the log reached `position`; else now."""
    if bound.at is not None:
        return bound.at
    if bound.position is not None:
        recorded: datetime | None = await db.fetchval(Q["recorded_at"], bound.position)
        if recorded is not None:
            return recorded
    return now

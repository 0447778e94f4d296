"""What every command needs: the store, the tenant's settings, secrets, the clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

import asyncpg

from events.appends import Write
from events.catalogue import Event
from events.clock import Clock
from events.envelope import Metadata, RecordedEvent, StreamRef
from events.errors import ConcurrencyConflict
from events.ledger import LEDGER
from events.store import EventStore, StreamAppend
from projections.runner import project
from service.commands.coalesced import Coalesced
from service.crypto.pii import FreshSubject, Sealer
from service.crypto.signing import KeyRing
from service.providers.jwks import JwksCache
from service.tenancy.config import TenantConfig

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
RETRIES = 5
InTransaction = Callable[[asyncpg.Connection], Awaitable[None]]
Observer = Callable[[Sequence[RecordedEvent]], None]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the request id (correlation) and the client's IP, if known; for a
    request of an agent or a person, the door it came through and the dialect it spoke
    (set by the HTTP adapters only; Metadata says what they mean)."""

    request_id: str | None = None
    client_ip: str | None = None
    actor: str = "agent"
    door: str | None = None
    dialect: str | None = None

    def envelope(self, *, client_ip: str | None = None, actor: str | None = None) -> Metadata:
        """The metadata of the events this caller causes (`client_ip` already sealed;
        `actor` when the events name another one than the caller's)."""
        return Metadata(
            correlation_id=self.request_id,
            actor=actor or self.actor,
            client_ip=client_ip,
            door=self.door,
            dialect=self.dialect,
        )


@dataclass(frozen=True, slots=True)
class Change:
    """Events for one stream, appended only if the stream is at `expected_version`."""

    stream: StreamRef
    expected_version: int
    events: Sequence[Event]


@dataclass(frozen=True)
class Context:
    store: EventStore
    tenant: TenantConfig
    sealer: Sealer
    secret_key: str
    clock: Clock
    keyring: KeyRing
    # Told of every append this process made, once committed (the credential cache, so this
    # process refuses a revoked key before the event feed brings the revocation back).
    on_recorded: Observer | None = None
    # Agent providers' keys, fetched for trusted issuers only (ID-JAGs and logout tokens).
    provider_keys: JwksCache | None = None
    # Reads this process's concurrent callers share (service/commands/coalesced.py), by name;
    # every tenant's context holds the same ones (`replace` keeps them), so their keys name
    # the tenant.
    shared_reads: dict[str, Coalesced[Any, Any]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def pool(self) -> asyncpg.Pool:
        return self.store.pool

    def coalesced(self, name: str, start: Callable[[], Coalesced[K, V]]) -> Coalesced[K, V]:
        """This process's `name` reads, started by `start` on first use."""
        reads = self.shared_reads.get(name)
        if reads is None:
            reads = self.shared_reads[name] = start()
        return cast(Coalesced[K, V], reads)

    def stream(self, stream_type: str, stream_id: str) -> StreamRef:
        return StreamRef(self.tenant.tenant_id, stream_type, stream_id)

    async def metadata(self, caller: Caller, subject_id: str) -> Metadata:
        """The envelope metadata; the client IP sealed under the data subject's key."""
        sealed_ip = (
            await self.sealer.seal(self.pool, subject_id, caller.client_ip)
            if caller.client_ip
            else None
        )
        return caller.envelope(client_ip=sealed_ip)

    def fresh_metadata(self, caller: Caller, subject: FreshSubject) -> Metadata:
        """`metadata` for a subject whose key is new (recorded with `fresh=`): no round trip."""
        sealed_ip = subject.seal(caller.client_ip) if caller.client_ip else None
        return caller.envelope(client_ip=sealed_ip)

    async def record(
        self,
        changes: Sequence[Change],
        *,
        metadata: Metadata,
        now: datetime,
        also: InTransaction | None = None,
        fresh: Sequence[FreshSubject] = (),
        writes: Sequence[Write] = (),
    ) -> list[RecordedEvent]:
        """Append every change atomically, projecting inline, storing the keys of `fresh`
        subjects, making `writes` (new rows: a batch sends each statement once) and running
        `also` in the same transaction. Raises ConcurrencyConflict when a stream moved."""
        parts = [
            StreamAppend(
                c.stream,
                c.expected_version,
                [LEDGER.new(e, occurred_at=now, metadata=metadata) for e in c.events],
            )
            for c in changes
            if c.events
        ]

        recorded = await self.store.append_many(
            parts, projector=project, writes=[*(s.write for s in fresh), *writes], also=also
        )
        for subject in fresh:
            self.sealer.remember(subject)
        if self.on_recorded is not None:
            self.on_recorded(recorded)
        return recorded


def in_turn(*steps: InTransaction) -> InTransaction:
    """One `also` step running `steps` in order, in the append's transaction."""

    async def run(conn: asyncpg.Connection) -> None:
        for step in steps:
            await step(conn)

    return run


async def retrying(attempt: Callable[[], Awaitable[T]], tries: int = RETRIES) -> T:
    """Run a command again when a stream it decided on moved, or when a racing command
    created the same user (a unique index) first: the next run sees what the winner wrote."""
    for _ in range(tries - 1):
        try:
            return await attempt()
        except (ConcurrencyConflict, asyncpg.UniqueViolationError):
            continue
    return await attempt()

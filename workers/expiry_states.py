"""What the expiry worker decides on (workers/expiry.py): its items and their state.

An item (`Case`) is a registration and the key it holds, a credential and the registration
it belongs to, or a v0.6 registration and every access token it holds before its claim (the
worker's `due` query names such a registration's tokens by the registration alone, so that
it and they are one item, settled in one append). `read_states` folds each item's streams
from the log, for any number of items in three queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, cast

import asyncpg

from events.appends import InTransaction
from events.credential import CredentialEvent
from events.envelope import RecordedEvent
from events.errors import ConcurrencyConflict
from events.ledger import LEDGER
from events.registration import RegistrationEvent
from events.sql import Conn, load_queries
from events.store import row_to_event
from service.domain.expiry import CredentialState, fold_credential
from service.domain.registration import Registration, fold

Q = load_queries("workers", "expiry.sql")


class Case(NamedTuple):
    """A registration and the credential it holds (or a credential and the registration it
    belongs to; or, with no credential, a v0.6 registration and its tokens): settled
    together, in one append."""

    tenant_id: str
    registration_id: str | None
    credential_id: str | None


# A case's registration, its credential and (a v0.6 registration's) the tokens it holds.
State = tuple[Registration | None, CredentialState | None, tuple[CredentialState, ...]]


def case_of(row: asyncpg.Record) -> Case:
    return Case(row["tenant_id"], row["registration_id"], row["credential_id"])


async def read_states(db: Conn | asyncpg.Pool, cases: Sequence[Case]) -> dict[Case, State]:
    """The folded registration and credential of every case, and the tokens each v0.6
    registration holds, read in three queries."""
    keys = {
        (case.tenant_id, stream_id)
        for case in cases
        for stream_id in (case.registration_id, case.credential_id)
        if stream_id is not None
    }
    streams = await _read_streams(db, keys)
    registrations = {
        case: _fold_registration(streams.get((case.tenant_id, case.registration_id), []))
        for case in cases
        if case.registration_id is not None
    }
    holding = [  # a v0.6 registration not claimed: its case is it and every token it holds
        (case.tenant_id, state.registration_id)
        for case, state in registrations.items()
        if state is not None and state.dialect == "v06" and state.status != "claimed"
        and case.credential_id is None
    ]  # fmt: skip
    held: dict[tuple[str, str], list[str]] = {}
    if holding:
        rows = await db.fetch(Q["held_tokens"], *map(list, zip(*holding, strict=True)))
        for row in rows:
            held.setdefault((row["tenant_id"], row["registration_id"]), []).append(
                row["credential_id"]
            )
        token_keys = {(t, c) for (t, _), ids in held.items() for c in ids}
        streams |= await _read_streams(db, token_keys)
    states: dict[Case, State] = {}
    for case in cases:
        registration = registrations.get(case)
        credential = (
            None
            if case.credential_id is None
            else _fold_credential(streams.get((case.tenant_id, case.credential_id), []))
        )
        ids = held.get((case.tenant_id, case.registration_id or ""), [])
        folded = (_fold_credential(streams.get((case.tenant_id, i), [])) for i in ids)
        states[case] = (registration, credential, tuple(t for t in folded if t is not None))
    return states


def no_token_unseen(case: Case, state: State) -> InTransaction | None:
    """For the item of a v0.6 registration about to end: a step run under the append lock,
    after the item's append, raising ConcurrencyConflict when the registration holds an
    active token the decision did not see (a V6 exchange that committed after the item was
    read), so the worker decides again with it and no token outlives the registration
    unrecorded. None for any other item."""
    registration, _, tokens = state
    if registration is None or registration.dialect != "v06" or case.credential_id is not None:
        return None
    known = {token.credential_id for token in tokens}
    tenant_id, registration_id = case.tenant_id, registration.registration_id

    async def check(conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(Q["held_tokens"], [tenant_id], [registration_id])
        if unseen := {str(row["credential_id"]) for row in rows} - known:
            raise ConcurrencyConflict(tenant_id, min(unseen), 0, 1)  # expected none: one is

    return check


async def _read_streams(
    db: Conn | asyncpg.Pool, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], list[RecordedEvent]]:
    """Every event of the streams named by (tenant id, stream id), by stream, in order."""
    by_stream: dict[tuple[str, str], list[RecordedEvent]] = {}
    if not keys:
        return by_stream
    tenants, ids = [k[0] for k in keys], [k[1] for k in keys]
    for row in await db.fetch(Q["read_streams"], tenants, ids):
        recorded = row_to_event(row)
        by_stream.setdefault((recorded.tenant_id, recorded.stream_id), []).append(recorded)
    return by_stream


def _fold_registration(events: list[RecordedEvent]) -> Registration | None:
    return fold([cast(RegistrationEvent, LEDGER.decode(r)) for r in events])


def _fold_credential(events: list[RecordedEvent]) -> CredentialState | None:
    return fold_credential(cast(CredentialEvent, LEDGER.decode(r)) for r in events)

"""Property: the `credentials` table (projections/credentials.sql) and the credential aggregate
(service.domain.credentials.evolve) fold a credential's events to the same state.

Random credential histories (any issue, then any run of re-scopes, revocations and expiries,
ended credentials ended again included, dated out of order) are appended to a real store,
whose inline projector writes the table; the same recorded events are folded by `evolve`.
Every column agrees, but one, on purpose: the table's `version` stays at the event that
ended a credential when another end follows (its `ended` statement touches active rows
only), where the aggregate's is the stream's version.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.credential import (
    CREDENTIAL_EVENTS,
    STREAM_TYPE,
    CredentialEvent,
    CredentialExpired,
    CredentialIssued,
    CredentialRescoped,
    CredentialRevoked,
)
from events.envelope import StreamRef
from events.ledger import LEDGER
from events.store import EventStore
from projections.runner import project
from service.domain.credentials import Credential, evolve

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TENANT = "default"
_ids = itertools.count()

times = st.builds(lambda minutes: T0 + timedelta(minutes=minutes), st.integers(-600, 6000))
maybe_time = st.none() | times
scopes = st.lists(st.sampled_from(["api.read", "api.write", "admin"]), max_size=3, unique=True)
user = st.none() | st.sampled_from(["usr_a", "usr_b"])

issued = st.builds(
    lambda kind, granted, via, registration, user_id, expires_at, issuer: CredentialIssued(
        credential_id="",  # set per example, unique in the database
        kind=kind,
        token_hash="",
        scopes=tuple(granted),
        issued_via=via,
        registration_id=registration,
        user_id=user_id,
        expires_at=expires_at,
        issuer=issuer,
        delegation_id="dlg_1" if issuer is not None else None,
    ),
    st.sampled_from(["api_key", "access_token"]),
    scopes,
    st.sampled_from(["anonymous", "verified_email", "id_jag"]),
    st.none() | st.just("reg_1"),
    user,
    maybe_time,
    st.none() | st.just("https://idp.example"),
)
later: st.SearchStrategy[CredentialEvent] = st.one_of(
    st.builds(
        lambda granted, user_id, expires_at: CredentialRescoped(
            scopes=tuple(granted), user_id=user_id, expires_at=expires_at
        ),
        scopes,
        user,
        maybe_time,
    ),
    st.builds(
        lambda reason, note: CredentialRevoked(reason=reason, note=note),
        st.sampled_from(["operator", "logout", "registration_expired"]),
        st.none() | st.just("a note"),
    ),
    st.just(CredentialExpired()),
)
history = st.tuples(issued, st.lists(st.tuples(later, times), max_size=6), times)


def _columns(state: Credential, table_version: int) -> dict[str, Any]:
    return {
        "credential_id": state.credential_id,
        "kind": state.kind,
        "scopes": list(state.scopes),
        "issued_via": state.issued_via,
        "registration_id": state.registration_id,
        "user_id": state.user_id,
        "status": state.status,
        "expires_at": state.expires_at,
        "issued_at": state.issued_at,
        "ended_at": state.ended_at,
        "end_reason": state.end_reason,
        "version": table_version,
        "issuer": state.issuer,
        "delegation_id": state.delegation_id,
    }


@pytest.mark.timeout(600)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(histories=st.lists(history, min_size=1, max_size=4))
async def test_the_table_and_the_aggregate_fold_a_credential_alike(
    histories: list[tuple[CredentialIssued, list[tuple[CredentialEvent, datetime]], datetime]],
    store: EventStore,
    pool: asyncpg.Pool,
) -> None:
    """Any credential history gives the same row in the table as the aggregate's state (its
    version aside where an ended credential ends again, as the module says)."""
    for drawn, rest, issued_at in histories:
        n = next(_ids)
        cid = f"cred_{n}"
        first = msgspec.structs.replace(drawn, credential_id=cid, token_hash=f"{n:064x}")
        dated = [(first, issued_at), *rest]
        new = [LEDGER.new(event, occurred_at=at) for event, at in dated]
        if n % 2:  # one append (the layered projector) or one per event (one by one)
            recorded = await store.append(
                StreamRef(TENANT, STREAM_TYPE, cid), 0, new, projector=project
            )
        else:
            recorded = []
            for version, one in enumerate(new):
                recorded += await store.append(
                    StreamRef(TENANT, STREAM_TYPE, cid), version, [one], projector=project
                )

        state: Credential | None = None
        table_version = 0
        for r in recorded:
            event = LEDGER.decode_as(r, CREDENTIAL_EVENTS)
            ends_again = (
                isinstance(event, CredentialRevoked | CredentialExpired)
                and state is not None
                and state.status != "active"
            )
            state = evolve(state, event, version=r.stream_version, at=r.occurred_at)
            table_version = table_version if ends_again else r.stream_version
        assert state is not None
        assert state.version == len(dated)

        row = await pool.fetchrow("SELECT * FROM credentials WHERE credential_id = $1", cid)
        assert row is not None
        got = {k: v for k, v in dict(row).items() if k not in ("tenant_id", "token_hash")}
        assert got == _columns(state, table_version)
        assert (row["tenant_id"], row["token_hash"]) == (TENANT, first.token_hash)

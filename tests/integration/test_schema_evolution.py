"""Old event versions in the log are read as today's, and the read models rebuilt from them.

The fixture writes `credential.issued` v1 rows exactly as the code before agent providers did
(payload without `issuer` and `delegation_id`, schema_version 1), through the real store, so
the hash chain covers those bytes. Reading lifts them to v2; nothing is rewritten. The same
for the rows written before the v0.6 door (below), which need no upcaster at all.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec

from events.catalogue import E
from events.credential import CREDENTIAL_EVENTS, CredentialIssued, CredentialRevoked
from events.delegation import DELEGATION_EVENTS, DelegationCreated, DelegationUsed
from events.envelope import Metadata, NewEvent, StreamRef
from events.hashchain import verify_log
from events.ledger import LEDGER
from events.registration import (
    REGISTRATION_EVENTS,
    ClaimAttemptStarted,
    RegistrationClaimed,
    RegistrationCreated,
)
from events.store import EventStore
from projections.runner import rebuild
from service.domain.registration import fold
from service.domain.trust_list import fold_delegation

AT = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
PUBLIC = "http://127.0.0.1:8000"
V1_PAYLOAD = {
    "type": "credential.issued",
    "credential_id": "cred_v1",
    "kind": "api_key",
    "token_hash": "ab" * 32,
    "scopes": ["api.read"],
    "issued_via": "anonymous",
    "registration_id": "reg_v1",
    "user_id": None,
    "expires_at": "2026-11-02T09:30:00Z",
}


async def _write_v1(store: EventStore) -> None:
    v1 = NewEvent(
        event_id=uuid.uuid4(),
        type="credential.issued",
        schema_version=1,
        occurred_at=AT,
        payload=json.dumps(V1_PAYLOAD).encode(),
        metadata=Metadata(actor="agent"),
    )
    await store.append(StreamRef("default", "credential", "cred_v1"), 0, [v1])


async def test_v1_credential_issued_reads_as_v2(store: EventStore) -> None:
    await _write_v1(store)
    [recorded] = await store.read_stream(StreamRef("default", "credential", "cred_v1"))
    assert recorded.schema_version == 1
    assert b"issuer" not in recorded.payload  # the stored bytes stay v1
    event = LEDGER.decode(recorded)
    assert isinstance(event, CredentialIssued)
    assert (event.issuer, event.delegation_id) == (None, None)
    assert (event.credential_id, event.scopes, event.issued_via) == (
        "cred_v1",
        ("api.read",),
        "anonymous",
    )
    assert CredentialIssued.schema_version == 2


async def test_rebuild_from_v1_rows_and_the_chain_still_verifies(
    store: EventStore, owner_pool: asyncpg.Pool
) -> None:
    await _write_v1(store)
    async with owner_pool.acquire() as conn:  # TRUNCATE: the owner's
        assert await rebuild(conn) == 1
        row = await conn.fetchrow(
            "SELECT kind, scopes, issued_via, issuer, delegation_id, status FROM credentials "
            "WHERE credential_id = 'cred_v1'"
        )
    report = await verify_log(store.read_all)
    assert row is not None
    assert dict(row) == {
        "kind": "api_key", "scopes": ["api.read"], "issued_via": "anonymous", "issuer": None,
        "delegation_id": None, "status": "active",
    }  # fmt: skip
    assert report.ok
    assert report.checked == 1


def test_new_credentials_are_written_as_v2() -> None:
    event = CredentialIssued(
        credential_id="cred_2", kind="api_key", token_hash="cd" * 32, scopes=("api.read",),
        issued_via="id_jag", issuer="https://idp.example", delegation_id="dlg_1",
    )  # fmt: skip
    new = LEDGER.new(event, occurred_at=AT)
    assert new.schema_version == 2
    assert json.loads(new.payload)["issuer"] == "https://idp.example"


# The v0.6 door (docs/design/v06-dialect.md, section 2.2) changed seven events without a
# version bump: optional fields whose defaults are what a row written before meant, and wider
# Literals. Each stream below is written exactly as the code before it did (payload bytes and
# metadata without `door`/`dialect`), then read back, folded and rebuilt.
REG, DLG, CRED = "reg_old06", "dlg_old06", "cred_old06"
PRE_06: dict[tuple[str, str], list[tuple[str, dict[str, object]]]] = {
    ("registration", REG): [
        ("registration.created", {
            "registration_id": REG, "kind": "anonymous", "requested_credential_type": "api_key",
            "claim_token_hash": "c1" * 32, "expires_at": "2026-11-02T09:30:00Z",
            "pre_claim_scopes": ["api.read"], "post_claim_scopes": ["api.read", "api.write"],
            "credential_id": CRED,
        }),
        ("claim.attempt_started", {
            "attempt_id": "cla_old06", "attempt_token_hash": "a1" * 32,
            "email_sealed": "pii1.cla_old06.blob", "email_index": "e1" * 32,
            "link_expires_at": "2026-11-01T09:40:00Z",
        }),
        ("claim.otp_issued", {
            "attempt_id": "cla_old06", "otp_hash": "o1" * 32, "expires_at": "2026-11-01T09:40:00Z",
        }),
        ("registration.claimed", {
            "attempt_id": "cla_old06", "user_id": "usr_old06", "credential_id": CRED,
        }),
    ],
    ("credential", CRED): [
        ("credential.issued", {
            "credential_id": CRED, "kind": "api_key", "token_hash": "t1" * 32,
            "scopes": ["api.read"], "issued_via": "anonymous", "registration_id": REG,
            "user_id": None, "expires_at": None, "issuer": None, "delegation_id": None,
        }),
        ("credential.revoked", {"reason": "operator", "note": "incident 7"}),
    ],
    ("delegation", DLG): [
        ("delegation.created", {
            "delegation_id": DLG, "issuer": "https://idp.example", "audience": PUBLIC,
            "subject_sealed": "pii1.usr_old06.blob", "user_id": "usr_old06",
            "matched_by": "provisioned",
        }),
        ("delegation.used", {
            "credential_id": "cred_dlg06", "jti": "jti-1", "client_id": "https://agent.example",
            "agent_platform": None, "agent_context_id": None,
        }),
    ],
}  # fmt: skip


async def _write_pre_06(store: EventStore) -> None:
    for (stream_type, stream_id), events in PRE_06.items():
        rows = [
            NewEvent(
                event_id=uuid.uuid4(),
                type=tag,
                schema_version=2 if tag == "credential.issued" else 1,
                occurred_at=AT,
                payload=json.dumps({"type": tag, **payload}).encode(),
                metadata=Metadata(correlation_id="req-old", actor="agent", client_ip="pii1.x.y"),
            )
            for tag, payload in events
        ]
        await store.append(StreamRef("default", stream_type, stream_id), 0, rows)


async def _read(
    store: EventStore, stream_type: str, stream_id: str, kinds: tuple[type[E], ...]
) -> list[E]:
    recorded = await store.read_stream(StreamRef("default", stream_type, stream_id))
    for row, (tag, payload) in zip(recorded, PRE_06[(stream_type, stream_id)], strict=True):
        assert json.loads(row.payload) == {"type": tag, **payload}  # the stored bytes stay
    return [LEDGER.decode_as(row, kinds) for row in recorded]


async def _rebuilt(owner_pool: asyncpg.Pool, query: str) -> dict[str, object]:
    async with owner_pool.acquire() as conn:  # TRUNCATE: the owner's
        assert await rebuild(conn) == sum(len(events) for events in PRE_06.values())
        row = await conn.fetchrow(query)
    assert row is not None
    return dict(row)


async def test_pre_06_registration_created_reads_as_a_v1_registration(
    store: EventStore, owner_pool: asyncpg.Pool
) -> None:
    """No `dialect`, no `step_up`: a v1 registration; the fold and the table say so."""
    await _write_pre_06(store)
    created, *_ = await _read(store, "registration", REG, REGISTRATION_EVENTS)
    assert isinstance(created, RegistrationCreated)
    assert (created.dialect, created.step_up, created.credential_id) == ("v1", None, CRED)
    state = fold([created])
    assert state is not None
    assert (state.dialect, state.step_up, state.status, state.stage) == (
        "v1", None, "unclaimed", 0,
    )  # fmt: skip
    row = await _rebuilt(
        owner_pool,
        "SELECT kind, status, dialect, delegation_id FROM registrations "
        f"WHERE registration_id = '{REG}'",
    )
    assert row == {"kind": "anonymous", "status": "claimed", "dialect": "v1", "delegation_id": None}


async def test_pre_06_attempt_started_reads_as_an_emailed_code(store: EventStore) -> None:
    """No `ceremony`: the v1 ceremony (`email`), on the event and on the folded attempt."""
    await _write_pre_06(store)
    events = await _read(store, "registration", REG, REGISTRATION_EVENTS)
    started = events[1]
    assert isinstance(started, ClaimAttemptStarted)
    assert started.ceremony == "email"
    state = fold(events[:3])
    assert state is not None
    assert state.attempt is not None
    assert (state.attempt.ceremony, state.attempt.status) == ("email", "challenged")


async def test_pre_06_registration_claimed_keeps_its_credential(
    store: EventStore, owner_pool: asyncpg.Pool
) -> None:
    """`credential_id` as written; no auth method, no deliveries allowed (v1 delivered its
    credential at E8, once)."""
    await _write_pre_06(store)
    events = await _read(store, "registration", REG, REGISTRATION_EVENTS)
    claimed = events[3]
    assert isinstance(claimed, RegistrationClaimed)
    assert (claimed.credential_id, claimed.auth_method) == (CRED, None)
    assert (claimed.max_deliveries, claimed.deliver_until) == (0, None)
    state = fold(events)
    assert state is not None
    assert (state.status, state.credential_id, state.stage) == ("claimed", CRED, 1)
    assert (state.max_deliveries, state.deliveries, state.deliver_until) == (0, 0, None)
    row = await _rebuilt(
        owner_pool,
        "SELECT status, user_id, credential_id, attempt_status FROM registrations "
        f"WHERE registration_id = '{REG}'",
    )
    assert row == {
        "status": "claimed", "user_id": "usr_old06", "credential_id": CRED,
        "attempt_status": "completed",
    }  # fmt: skip


async def test_pre_06_delegation_created_reads_its_match(
    store: EventStore, owner_pool: asyncpg.Pool
) -> None:
    """`matched_by` as written (the Literal only grew `step_up`)."""
    await _write_pre_06(store)
    created, used = await _read(store, "delegation", DLG, DELEGATION_EVENTS)
    assert isinstance(created, DelegationCreated)
    assert created.matched_by == "provisioned"
    state = fold_delegation([(created, 1), (used, 2)])
    assert state is not None
    assert (state.revoked, state.revocations, state.version) == (False, 0, 2)
    row = await _rebuilt(
        owner_pool,
        f"SELECT matched_by, uses, generation FROM delegations WHERE delegation_id = '{DLG}'",
    )
    assert row == {"matched_by": "provisioned", "uses": 1, "generation": 0}


async def test_pre_06_delegation_used_names_its_credential(store: EventStore) -> None:
    """`credential_id` as written; no `audience` (v1 accepted our issuer only, O1)."""
    await _write_pre_06(store)
    _, used = await _read(store, "delegation", DLG, DELEGATION_EVENTS)
    assert isinstance(used, DelegationUsed)
    assert (used.credential_id, used.audience, used.jti) == ("cred_dlg06", None, "jti-1")


async def test_pre_06_credential_issued_and_revoked_read_as_written(
    store: EventStore, owner_pool: asyncpg.Pool
) -> None:
    """`issued_via` and the revocation's reason as written (both only grew new values)."""
    await _write_pre_06(store)
    issued, revoked = await _read(store, "credential", CRED, CREDENTIAL_EVENTS)
    assert isinstance(issued, CredentialIssued)
    assert isinstance(revoked, CredentialRevoked)
    assert (issued.issued_via, issued.kind) == ("anonymous", "api_key")
    assert (revoked.reason, revoked.note) == ("operator", "incident 7")
    row = await _rebuilt(
        owner_pool,
        f"SELECT issued_via, status, end_reason FROM credentials WHERE credential_id = '{CRED}'",
    )
    assert row == {"issued_via": "anonymous", "status": "revoked", "end_reason": "operator"}


async def test_metadata_without_door_reads_as_none_and_keeps_its_bytes(
    store: EventStore,
) -> None:
    """Metadata written before `door`/`dialect` existed decodes with both None, and a
    metadata without them still encodes to the same bytes (the hash chain covers them)."""
    await _write_pre_06(store)
    recorded = await store.read_stream(StreamRef("default", "registration", REG))
    for row in recorded:
        assert json.loads(row.metadata) == {
            "correlation_id": "req-old", "actor": "agent", "client_ip": "pii1.x.y",
        }  # fmt: skip
        metadata = row.decoded_metadata()
        assert (metadata.door, metadata.dialect) == (None, None)
        assert msgspec.json.encode(metadata) == msgspec.json.encode(
            Metadata(correlation_id="req-old", actor="agent", client_ip="pii1.x.y")
        )
        assert b"door" not in msgspec.json.encode(metadata)
    report = await verify_log(store.read_all)
    assert report.ok

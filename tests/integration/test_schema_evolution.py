"""Old event versions in the log are read as today's, and the read models rebuilt from them.

The fixture writes `credential.issued` v1 rows exactly as the code before agent providers did
(payload without `issuer` and `delegation_id`, schema_version 1), through the real store, so
the hash chain covers those bytes. Reading lifts them to v2; nothing is rewritten.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg

from events.credential import CredentialIssued
from events.envelope import Metadata, NewEvent, StreamRef
from events.hashchain import verify_log
from events.ledger import LEDGER
from events.store import EventStore
from projections.runner import rebuild

AT = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
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

"""Read model `credentials`: every API key and access token, its scopes and whether it lives."""

from __future__ import annotations

from typing import Any, assert_never

from events.credential import (
    CredentialEvent,
    CredentialExpired,
    CredentialIssued,
    CredentialRescoped,
    CredentialRevoked,
)
from events.envelope import RecordedEvent
from events.rows import ColumnForm, column_form
from events.sql import load_queries

Q = load_queries("projections", "credentials.sql")
column_form(Q["issued"], ColumnForm(Q["issued_rows"], joined=(4,)))
Statement = tuple[str, tuple[Any, ...]]


def statement(event: CredentialEvent, recorded: RecordedEvent) -> Statement:
    cid, version, at = recorded.stream_id, recorded.stream_version, recorded.occurred_at
    match event:
        case CredentialIssued():
            return Q["issued"], (
                cid, recorded.tenant_id, event.kind, event.token_hash, list(event.scopes),
                event.issued_via, event.registration_id, event.user_id, event.expires_at, at,
                version, event.issuer, event.delegation_id,
            )  # fmt: skip
        case CredentialRescoped():
            return Q["rescoped"], (cid, list(event.scopes), event.user_id, event.expires_at,
                                   version)  # fmt: skip
        case CredentialRevoked():
            return Q["ended"], (cid, "revoked", at, event.reason, version)
        case CredentialExpired():
            return Q["ended"], (cid, "expired", at, "expired", version)
        case _:
            assert_never(event)

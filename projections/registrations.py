"""Read model `registrations`: one row per registration, its live attempt and status."""

from __future__ import annotations

from typing import Any, assert_never

from events.envelope import RecordedEvent
from events.registration import (
    ClaimAttemptDenied,
    ClaimAttemptExpired,
    ClaimAttemptLocked,
    ClaimAttemptsErased,
    ClaimAttemptStarted,
    ClaimAttemptSuperseded,
    ClaimDelivered,
    OtpFailed,
    OtpIssued,
    RegistrationClaimed,
    RegistrationCreated,
    RegistrationErased,
    RegistrationEvent,
    RegistrationExpired,
    RegistrationRevoked,
)
from events.rows import ColumnForm, column_form
from events.sql import load_queries

Q = load_queries("projections", "registrations.sql")
column_form(Q["created"], ColumnForm(Q["created_rows"]))
column_form(Q["attempt_started"], ColumnForm(Q["attempt_started_rows"]))
Statement = tuple[str, tuple[Any, ...]]


# One case per event, so that assert_never names any event left out (hence the noqa).
def statement(event: RegistrationEvent, recorded: RecordedEvent) -> Statement:  # noqa: PLR0912
    """The one SQL statement that applies `event` to the table."""
    rid, version, at = recorded.stream_id, recorded.stream_version, recorded.occurred_at
    match event:
        case RegistrationCreated():
            status = "unclaimed" if event.kind == "anonymous" else "pending_claim"
            step_up = event.step_up
            return Q["created"], (
                rid, recorded.tenant_id, event.kind, status, event.requested_credential_type,
                event.claim_token_hash, event.expires_at, event.credential_id, version, at,
                event.dialect, step_up.delegation_id if step_up is not None else None,
            )  # fmt: skip
        case ClaimAttemptStarted():
            return Q["attempt_started"], (
                rid, event.attempt_id, event.attempt_token_hash, event.link_expires_at,
                event.email_index, version, at,
            )  # fmt: skip
        case ClaimAttemptSuperseded():
            return Q["attempt_status"], (rid, "superseded", version, at)
        case OtpIssued():
            return Q["attempt_status"], (rid, "challenged", version, at)
        case ClaimAttemptLocked():
            return Q["attempt_status"], (rid, "locked", version, at)
        case ClaimAttemptExpired():
            return Q["attempt_link_expired"], (rid, version, at)
        case OtpFailed() | ClaimDelivered():
            return Q["touched"], (rid, version, at)
        case ClaimAttemptDenied():
            return Q["attempt_status"], (rid, "denied", version, at)
        case RegistrationClaimed():
            return Q["claimed"], (rid, event.user_id, event.credential_id, version, at)
        case RegistrationExpired():
            return Q["ended"], (rid, "expired", version, at)
        case RegistrationRevoked():
            return Q["ended"], (rid, "revoked", version, at)
        case RegistrationErased():
            return Q["erased"], (rid, version, at)
        case ClaimAttemptsErased():
            return Q["attempts_erased"], (rid, list(event.attempt_ids), version, at)
        case _:
            assert_never(event)

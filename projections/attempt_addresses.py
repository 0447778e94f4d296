"""Read model `attempt_addresses`: every claim attempt's address (its blind index) and the data
subject it was sealed under, kept after the attempt is superseded (security issue 12, finding 4).

`registrations.email_index` holds the current attempt's address only, so erasing by address
found a registration only while the person's attempt was its latest: an earlier attempt's
address, mail and client addresses stayed readable. Here every (registration, attempt,
address) ever started is a row until an erasure destroys that attempt's key.

Attempts started since this table exists seal their address under their own id (a subject of
their own); older ones under the registration's id, so erasing those takes the registration.
"""

from __future__ import annotations

from typing import Any

from events.envelope import RecordedEvent
from events.registration import (
    ClaimAttemptsErased,
    ClaimAttemptStarted,
    RegistrationErased,
    RegistrationEvent,
)
from events.rows import ColumnForm, column_form
from events.sql import load_queries

Q = load_queries("projections", "attempt_addresses.sql")
column_form(Q["started"], ColumnForm(Q["started_rows"]))
Statement = tuple[str, tuple[Any, ...]]


def sealed_subject(sealed: str) -> str:
    """The data subject of a `pii1.<subject>.<blob>` value (service.crypto.pii's format)."""
    return sealed.partition(".")[2].rpartition(".")[0]


def statement(event: RegistrationEvent, recorded: RecordedEvent) -> Statement | None:
    """The statement that applies `event` to the table, if it touches it."""
    rid = recorded.stream_id
    match event:
        case ClaimAttemptStarted():
            return Q["started"], (
                rid, event.attempt_id, recorded.tenant_id, event.email_index,
                sealed_subject(event.email_sealed), recorded.occurred_at,
            )  # fmt: skip
        case ClaimAttemptsErased():
            return Q["attempts_erased"], (rid, list(event.attempt_ids))
        case RegistrationErased():
            return Q["registration_erased"], (rid, list(event.attempts))
        case _:
            return None

"""Schemathesis hooks of the fuzz runs (tests/fuzz/run.py): one check of authledger's own,
and the serializer of V9's `application/secevent+jwt` body (the bare SET).

`no_event_on_refusal`: a refused request (4xx) appended nothing. Every event carries the id of
the request that caused it as its correlation id, and every answer carries that id in
`X-Request-ID`, so after a 4xx the check looks for events with its id: exact with concurrent
workers, and whatever else schemathesis's own checks send in between. The one exception is
the protocol's: a wrong code against a live code at E8 is recorded (`claim.otp_failed`, and at
the limits `claim.attempt_locked` and `registration.expired`, spec §6.4), and so is one at the
v0.6 claim page's V5 (with the lock's revocations of the pre-claim tokens), and the v0.6
door's ID-JAG step-up, whose 401 opens a ceremony (and, in the AuthKit profile, a wrong code
at claim/complete, with the same lock, and a reused refresh token, which ends its family);
every other refused try writes nothing (docs/security.md, finding 1).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
import schemathesis

DATABASE_ENV = "AUTHLEDGER_FUZZ_DATABASE_URL"
RECORDED_REFUSALS = {
    ("POST", "/agent/auth/claim/complete"): {
        "claim.otp_failed",
        "claim.attempt_locked",
        "registration.expired",
    },
    # V5 on the v0.6 claim page: a wrong code, as E8 (O-H), the lock ending the pre-claim tokens.
    ("POST", "/claim"): {
        "claim.otp_failed",
        "claim.attempt_locked",
        "registration.expired",
        "credential.revoked",
    },
    # V1's step-up 401 (`interaction_required`) opens the ceremony: the step-up registration,
    # its attempt and code, the subject's open step-up revoked (design section 5.1). In the
    # AuthKit profile a rotated refresh token presented again ends its family's live one
    # (`credential.revoked`, refresh_reuse) before the 400 (design section 12).
    ("POST", "/agent/identity"): {
        "registration.created",
        "claim.attempt_started",
        "claim.otp_issued",
        "registration.revoked",
        "credential.revoked",
    },
    # AuthKit's claim/complete: a wrong code counts, as at V5 (the lock ending the tokens).
    ("POST", "/agent/identity/claim/complete"): {
        "claim.otp_failed",
        "claim.attempt_locked",
        "registration.expired",
        "credential.revoked",
    },
}
T = TypeVar("T")


@schemathesis.serializer("application/secevent+jwt")
def secevent_jwt(ctx: Any, value: Any) -> bytes:
    """V9's body is the SET itself: a generated string as its UTF-8 bytes (anything else the
    schema would not generate is sent as its text, for the route to refuse)."""
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else str(value)).encode("utf-8", "surrogatepass")


class EventLog:
    """The run's database, queried from schemathesis's threads through a loop of its own."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._loop.run_forever, name="fuzz-log", daemon=True)
        thread.start()
        self._pool: asyncpg.Pool = self._run(self._open(url))
        self.start: int = self._run(
            self._pool.fetchval("SELECT coalesce(max(position), 0) FROM events")
        )

    @staticmethod
    async def _open(url: str) -> asyncpg.Pool:
        return await asyncpg.create_pool(url, min_size=1, max_size=4)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def written_by(self, request_id: str) -> list[str]:
        """The types of the events this run's request `request_id` appended."""
        rows = self._run(
            self._pool.fetch(
                "SELECT type FROM events WHERE position > $1"
                " AND metadata->>'correlation_id' = $2 ORDER BY position",
                self.start,
                request_id,
            )
        )
        return [row["type"] for row in rows]


_log: EventLog | None = None
_lock = threading.Lock()


def event_log() -> EventLog:
    global _log  # noqa: PLW0603 -- one pool per schemathesis process, made on first use
    with _lock:
        if _log is None:
            _log = EventLog(os.environ[DATABASE_ENV])
        return _log


@schemathesis.check
def no_event_on_refusal(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """A 4xx wrote no event (E8's recorded wrong codes aside); every answer has a request id."""
    ids = response.headers.get("x-request-id") or []
    if len(ids) != 1 or not ids[0]:
        raise AssertionError("the answer carries no X-Request-ID")
    if not 400 <= response.status_code < 500:
        return None
    written = event_log().written_by(ids[0])
    allowed = RECORDED_REFUSALS.get((case.operation.method.upper(), case.operation.path), set())
    unexpected = [event_type for event_type in written if event_type not in allowed]
    if unexpected:
        raise AssertionError(
            f"a refused request ({response.status_code}) appended events: {unexpected}"
        )
    return None

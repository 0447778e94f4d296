"""What one request did, as its handlers say it: the refusal's error code, if refused, and
the types of the events its commands appended. The request middleware opens a `Tracking`
around each request; the code that answers a refusal calls `note_refusal`, and
`Metrics.observe_appended` adds what was appended. The request's counters
(service.observability.metrics) are labelled from it once the answer has started."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field


@dataclass
class RequestOutcome:
    """What one request did: its refusal code, if refused; the events it appended."""

    error: str | None = None
    appended: list[str] = field(default_factory=list)


_OUTCOME: ContextVar[RequestOutcome | None] = ContextVar("authledger_outcome", default=None)


class Tracking:
    """Around one request (the request middleware): collects what it did. A class, not a
    generator-based context manager: it is entered on every request."""

    __slots__ = ("_outcome", "_token")

    def __init__(self) -> None:
        self._outcome = RequestOutcome()
        self._token: Token[RequestOutcome | None] | None = None

    def __enter__(self) -> RequestOutcome:
        self._token = _OUTCOME.set(self._outcome)
        return self._outcome

    def __exit__(self, *_: object) -> None:
        if self._token is not None:
            _OUTCOME.reset(self._token)


def current_outcome() -> RequestOutcome | None:
    """The outcome of the request being answered; None outside a request (a worker)."""
    return _OUTCOME.get()


def note_refusal(code: str) -> None:
    """Called where a refusal is answered: the error code, for the outcome counters."""
    outcome = _OUTCOME.get()
    if outcome is not None:
        outcome.error = code

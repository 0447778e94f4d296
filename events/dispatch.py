"""A typed dispatch table: which handlers an event goes to, by its type.

Each handler is registered for an aggregate's event types (`*_EVENTS`, a tuple typed with the
aggregate's union), so the type checker holds it to exactly that union, and a lookup by the
event's own class replaces a chain of `isinstance` tests (and the casts it needs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from events.catalogue import E, Event
from events.envelope import RecordedEvent

R = TypeVar("R")
Handler = Callable[[E, RecordedEvent], R | None]


class Dispatch(Generic[R]):
    """Handlers by event type; `apply` runs those of an event, in the order registered."""

    def __init__(self) -> None:
        self._by_type: dict[type[Event], list[Callable[[Any, RecordedEvent], R | None]]] = {}

    def on(self, kinds: tuple[type[E], ...], handler: Handler[E, R]) -> Dispatch[R]:
        """Also send events of `kinds` to `handler` (returns the table, to chain)."""
        for kind in kinds:
            self._by_type.setdefault(kind, []).append(handler)
        return self

    def apply(self, event: Event, recorded: RecordedEvent) -> list[R]:
        """What the event's handlers return, leaving out None; [] for a type none handles."""
        results = []
        for handler in self._by_type.get(type(event), ()):
            result = handler(event, recorded)
            if result is not None:
                results.append(result)
        return results

"""Anonymous registrations as the HTTP benches make and count them: the request body, questions
to the bench database's event log, and whether every registration answered 200 was committed."""

from __future__ import annotations

from dataclasses import dataclass

from scratch_database import BenchLog

REGISTER_BODY = b'{"type":"anonymous","requested_credential_type":"api_key"}'


class Log(BenchLog):
    """Questions about the registrations in the bench database's event log."""

    async def registrations(self) -> int:
        value = await self.conn.fetchval(
            "SELECT count(*) FROM events WHERE type = 'registration.created'"
        )
        return int(value)

    async def projected_registrations(self) -> int:
        """The registrations read model's count: cheaper, for polling."""
        value = await self.conn.fetchval("SELECT count(*) FROM registrations")
        return int(value)

    async def registration_ids_after(self, position: int) -> list[str]:
        """The correlation (request) ids of the registrations recorded after `position`."""
        rows = await self.conn.fetch(
            "SELECT metadata->>'correlation_id' AS id FROM events "
            "WHERE type = 'registration.created' AND position > $1",
            position,
        )
        return [str(r["id"]) for r in rows]


@dataclass(frozen=True)
class Committed:
    """Whether every registration answered 200 is in the log."""

    ok: int  # 200 answers wrk saw
    ids: int  # distinct request ids among them (X-Request-ID)
    found: int  # of those, registrations in the log with that request id
    new_events: int  # registration.created recorded during the run
    connections: int

    @property
    def in_flight(self) -> int:
        """Recorded but never seen by wrk: requests it left in flight when it stopped."""
        return self.new_events - self.found

    @property
    def holds(self) -> bool:
        return self.ids == self.found == self.ok and 0 <= self.in_flight <= self.connections

    def line(self) -> str:
        verdict = "yes" if self.holds else "NO"
        return (
            f"{self.ok} answered 200, {self.found} of them in the log; "
            f"{self.new_events} registration.created recorded = {self.found} + "
            f"{self.in_flight} still in flight when wrk stopped (at most {self.connections}); "
            f"every 200 committed: {verdict}"
        )

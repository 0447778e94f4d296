"""The relay: every event of the log to JetStream, exactly once, in position order.

It tails the log by position (woken by LISTEN/NOTIFY), publishes each window of events
pipelined (in order, on one connection, so the stream stores them in that order), waits for
the acks, then writes its checkpoint. Exactly-once without trusting JetStream's dedupe window:

- only one relay runs: it holds a session advisory lock named for its checkpoint, on a
  connection that also writes the checkpoint, so a relay whose session died cannot advance it;
- before publishing (at start and after any failure) it reads the stream's tail backwards and
  collects the events already stored above the checkpoint (position and event id), and
  skips them. The relay only
  ever publishes positions within MAX_WINDOW above its checkpoint, so once the scan meets a
  message at or below `checkpoint - MAX_WINDOW`, nothing earlier can lie above the checkpoint;
- the dedupe window (Nats-Msg-Id = event id) only covers races the scan cannot see, such as a
  killed process's last publishes still in flight.

The connection, the lock, the stream's set-up, pipelined publishes and retries are the base's
(workers/base/jetstream.py): NATS outages and Postgres blips are retried with capped, jittered
back-off, and anything else ends `run` (a bug, for the runner to report).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from events.envelope import RecordedEvent
from events.sql import load_queries
from events.store import EventStore, Wakeups
from workers.base import jetstream
from workers.base.jetstream import LockConn
from workers.feed import MSG_ID_HEADER, POSITION_HEADER, encode_event, headers_for, subject_for

MAX_WINDOW = 512
SCAN_BATCH = 64
Q = load_queries("workers", "relay.sql")


@dataclass(frozen=True)
class RelayConfig(jetstream.PublisherConfig):
    window: int = 256

    def __post_init__(self) -> None:
        if not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be between 1 and {MAX_WINDOW}")

    @property
    def checkpoint_name(self) -> str:
        return self.checkpoint or f"relay:{self.stream}"


@dataclass
class RelayStats(jetstream.PublisherStats):
    pass


class Relay(jetstream.JetStreamPublisher[RelayConfig, RelayStats, dict[int, str]]):
    """Tails the log and publishes every event to JetStream; see the module docstring."""

    name = "relay"

    def __init__(
        self, pool: asyncpg.Pool, nats_url: str, config: RelayConfig | None = None
    ) -> None:
        super().__init__(pool, nats_url, config or RelayConfig(), RelayStats())
        self._store = EventStore(pool)

    async def _load(self, conn: LockConn) -> None:
        name = self.config.checkpoint_name
        self.stats.position = int(await conn.fetchval(Q["load_checkpoint"], name) or 0)

    async def _pump(
        self, js: JetStreamContext, conn: LockConn, wakeups: Wakeups, present: dict[int, str]
    ) -> None:
        cfg = self.config
        while True:
            wakeups.clear()
            events = await self._store.read_all(self.stats.position, cfg.window)
            if not events:
                await self._idle(conn, wakeups)
                continue
            if len(events) < cfg.window and cfg.settle > 0:
                # Appends are still arriving: one window a little later, not one per batch.
                await asyncio.sleep(cfg.settle)
                events += await self._store.read_all(events[-1].position, cfg.window - len(events))
            acked = await self._publish(js, [self._outgoing(e, present) for e in events])
            if acked.done:
                position = events[acked.done - 1].position
                await conn.execute(Q["save_checkpoint"], cfg.checkpoint_name, position)
                self.stats.position = position
                for stored in range(events[0].position, position + 1):
                    present.pop(stored, None)
                self._backoff.reset()
                self._changed()
                self._log.info("relay.published", count=acked.done, position=position)
            if acked.failure is not None:
                self._log.warning("relay.not_acked", position=events[acked.done].position,
                                  error=acked.failure)  # fmt: skip
                raise jetstream.PublishIncomplete(
                    f"{len(events) - acked.done} of {len(events)} not acked"
                )

    def _outgoing(self, event: RecordedEvent, present: dict[int, str]) -> jetstream.Outgoing | None:
        if present.get(event.position) == str(event.event_id):
            return None
        subject = subject_for(self.config.subject_prefix, event)
        return jetstream.Outgoing(subject, encode_event(event), headers_for(event))

    async def _scan(self, js: JetStreamContext) -> dict[int, str]:
        """Event ids by position above the checkpoint already in the stream, read from its
        tail backwards. A message of another log (say the database was reset) has another id."""
        checkpoint = self.stats.position
        state = (await self._stream(js)).state
        floor = checkpoint - MAX_WINDOW
        present: dict[int, str] = {}
        seq, scanned = state.last_seq, 0
        while seq >= max(state.first_seq, 1):
            low = max(state.first_seq, 1, seq - SCAN_BATCH + 1)
            found = await asyncio.gather(*(self._id_at(js, s) for s in range(seq, low - 1, -1)))
            scanned += len(found)
            seq = low - 1
            for position, event_id in filter(None, found):
                if position > checkpoint:
                    present.setdefault(position, event_id)
                elif position <= floor:
                    seq = 0
                    break
        self._scanned(len(present), checkpoint=checkpoint, scanned=scanned)
        return present

    async def _id_at(self, js: JetStreamContext, seq: int) -> tuple[int, str] | None:
        """The position and event id of message `seq`, if the relay published it."""
        try:
            msg = await js.get_msg(self.config.stream, seq)
        except NotFoundError:  # deleted or purged
            return None
        headers = msg.headers or {}
        position, event_id = headers.get(POSITION_HEADER, ""), headers.get(MSG_ID_HEADER)
        return (int(position), event_id) if position.isdigit() and event_id else None

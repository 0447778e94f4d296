"""The checkpoint signing round: signs the hash chain every N events or M minutes.

A round takes the last checkpoint (or the genesis), recomputes the chain from it over the
events since (service.audit.verify.walk: the signer vouches only for a chain it checked), and
signs `(position, chain hash there, signed_at)` with the service's active EdDSA key
(service.crypto.signing.KeyRing) as a compact JWS (service.audit.signed), stored in
`chain_checkpoints` with the key's public JWK in `chain_checkpoint_keys`. Positions signed:
every `every` events after the last checkpoint, and the head once its oldest unsigned event
has waited `minutes` (so every event is anchored within N events or M minutes of being
recorded). A broken chain is logged (`checkpoints.chain_broken`) and nothing is signed.

Off the database (service/audit/publisher.py): each checkpoint is also published to a
JetStream stream that refuses deletes and purges, and a round signs nothing while the log
disagrees with the newest published checkpoint (`checkpoints.published_contradicted`: its
tail was cut or rewritten after it was anchored).

Rounds run under a transaction-level advisory lock, so several signers never sign twice; a
checkpoint at a position already signed is kept as it is. The checkpoint worker
(workers/checkpoints.py) runs a round whenever one may be due; `sign_now` is the same round
forced to sign the head at once (exports ask for it, so what they prove is anchored).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import structlog

from events.clock import Clock, SystemClock
from events.hashchain import GENESIS
from events.sql import Conn, load_queries
from service.audit.publisher import Publisher
from service.audit.signed import Checkpoint, Jwk, sign
from service.audit.verify import walk
from service.crypto.signing import KeyRing

LOCK = 0x6175_7468_636B_7074  # "authckpt"
EVERY = 1000  # events between checkpoints, by default
MINUTES = 5.0  # longest an event waits for a checkpoint, by default
Q = load_queries("service.audit", "signing_round.sql")
log = structlog.get_logger("service.audit.signing_round")


@dataclass
class SigningStats:
    signed: int = 0  # checkpoints this signer wrote
    last_position: int = 0  # the last one it wrote
    broken: int = 0  # rounds that found the chain broken
    contradicted: int = 0  # rounds that found the log disagreeing with what was published
    published: int = 0  # checkpoints this signer published off the database
    published_position: int = 0  # the newest published position it knows of


class SigningRound:
    """Signs what is due (see the module docstring); `stats` say what it did, and `changed`
    is called after each change of them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        keyring: KeyRing,
        *,
        every: int = EVERY,
        minutes: float = MINUTES,
        clock: Clock | None = None,
        publisher: Publisher | None = None,
        stats: SigningStats | None = None,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._keyring = keyring
        self._every, self._minutes = every, minutes
        self._clock = clock or SystemClock()
        self._publisher = publisher
        self.stats = stats or SigningStats()
        self._changed = changed

    async def run_once(self, *, force: bool = False) -> list[Checkpoint]:
        """One round: the checkpoints now due (with `force`, the head's too), signed; then
        those not yet published, published."""
        async with self._pool.acquire() as conn:
            signed: list[Checkpoint] = []
            refused = self.stats.contradicted
            if force or await self._due(conn):
                async with conn.transaction():
                    await conn.execute(Q["lock"], LOCK)
                    signed = await self._round(conn, force)
            if (
                self._publisher is not None
                and self.stats.contradicted == refused  # this round said it already
                and (signed or (await self._last(conn))[0] > self._publisher.position)
            ):
                await self._publish(conn, self._publisher)
            return signed

    async def next_deadline(self) -> datetime | None:
        """When the oldest unsigned event will have waited `minutes` (None: none waits)."""
        async with self._pool.acquire() as conn:
            return await self._deadline(conn, await self._last(conn))

    async def _last(self, conn: Conn) -> tuple[int, bytes]:
        row = await conn.fetchrow(Q["last"])
        return (row["position"], row["chain_hash"]) if row is not None else (0, GENESIS)

    async def _deadline(self, conn: Conn, last: tuple[int, bytes]) -> datetime | None:
        recorded = await conn.fetchval(Q["recorded_at"], last[0] + 1)
        if recorded is None:
            return None
        deadline: datetime = recorded + timedelta(minutes=self._minutes)
        return deadline

    async def _due(self, conn: Conn) -> bool:
        last = await self._last(conn)
        head = int(await conn.fetchval(Q["head"]))
        if head - last[0] >= self._every:
            return True
        deadline = await self._deadline(conn, last)
        return deadline is not None and deadline <= self._clock.now()

    async def _round(self, conn: Conn, force: bool) -> list[Checkpoint]:
        after, prev = await self._last(conn)
        head = int(await conn.fetchval(Q["head"]))
        targets = list(range(after + self._every, head + 1, self._every))
        deadline = await self._deadline(conn, (after, prev))
        now = self._clock.now()
        if head > after and (force or (deadline is not None and deadline <= now)):
            targets.append(head)
        if not targets:
            return []
        result = await walk((conn,), after=after, prev_hash=prev, until=max(targets))
        if result.problem is not None:
            self.stats.broken += 1
            self._changed()
            problem = result.problem
            log.error("checkpoints.chain_broken", position=problem.position, reason=problem.reason)
            return []
        hashes = {r["position"]: r["hash"] for r in await conn.fetch(Q["hashes"], targets)}
        await self._keyring.load(self._pool)  # another process may have rotated the key
        if self._publisher is not None and not await self._agrees(conn, self._publisher):
            return []
        key = self._keyring.active
        if key is None:
            key = await self._keyring.ensure_active(self._pool, now)
        await conn.execute(Q["insert_key"], key.kid, json.dumps(key.public_jwk), now)
        signed = []
        for position in sorted(set(targets)):
            checkpoint = sign(
                private_key=key.private_key,
                kid=key.kid,
                position=position,
                chain_hash=hashes[position],
                at=now,
            )
            await conn.execute(
                Q["insert"],
                position,
                checkpoint.chain_hash,
                key.kid,
                checkpoint.signed_at,
                checkpoint.jws,
            )
            signed.append(checkpoint)
        self.stats.signed += len(signed)
        self.stats.last_position = signed[-1].position
        self._changed()
        log.info(  # a catching-up round signs thousands: the line names the range, not each
            "checkpoints.signed",
            count=len(signed),
            first=signed[0].position,
            last=signed[-1].position,
            kid=key.kid,
        )
        return signed

    def _public_keys(self) -> dict[str, Jwk]:
        return {key.kid: key.public_jwk for key in self._keyring.keys}

    async def _agrees(self, conn: Conn, publisher: Publisher) -> bool:
        agrees = await publisher.agrees(conn, self._public_keys())
        self._count(publisher)
        return agrees

    async def _publish(self, conn: Conn, publisher: Publisher) -> None:
        """The database's checkpoints above the newest published one, published in order."""
        await self._keyring.load(self._pool)
        async with conn.transaction():
            await conn.execute(Q["lock"], LOCK)
            await publisher.publish(conn, self._public_keys())
        self._count(publisher)

    def _count(self, publisher: Publisher) -> None:
        stats = self.stats
        stats.published, stats.contradicted = publisher.published, publisher.contradicted
        stats.published_position = publisher.position
        self._changed()


async def sign_now(
    pool: asyncpg.Pool, keyring: KeyRing, clock: Clock, publisher: Publisher | None = None
) -> list[Checkpoint]:
    """Sign the head now (and whatever else is due), e.g. before an export; with a publisher,
    publish what is not published yet too."""
    return await SigningRound(pool, keyring, clock=clock, publisher=publisher).run_once(force=True)

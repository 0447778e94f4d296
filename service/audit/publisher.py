"""The signing round's JetStream side: publish every signed checkpoint off the database
(service/audit/published.py), and tell the signer (service/audit/signing_round.py) whether
the log still agrees with the newest one published.

After each round the publisher reads the newest published checkpoint and publishes, in order,
the database's checkpoints above it. It publishes only what it checked: each row's JWS must
verify under the service's own keys (public keys derived from the sealed private keys) and
sign the hash the log holds at that position now, and the log must still hold the newest
published checkpoint's hash. Otherwise nothing more is published and
`checkpoints.published_contradicted` is logged: the log's tail was cut or rewritten after it
was anchored (`audit verify` names the break), and a signer that went on would be anchoring
the rewritten log. The signer asks the same question (`agrees`) before it signs.

Publishing happens under the checkpoint lock, so workers side by side publish in position
order; `Nats-Msg-Id` covers a publish repeated after a lost acknowledgement. NATS outages are
logged and retried at the next round; the database's checkpoints wait for them.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Awaitable, Mapping
from typing import TypeVar

import nats.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from events.sql import Conn, load_queries
from service.audit.published import CheckpointStream, UnsafeStream, connect
from service.audit.signed import BadCheckpoint, Checkpoint, Jwk, verify

T = TypeVar("T")
Q = load_queries("service.audit", "signing_round.sql")
log = structlog.get_logger("service.audit.publisher")
CONNECT_TIMEOUT = 5.0
ACK_TIMEOUT = 5.0


class Outcome(enum.Enum):
    """What stood in a step's way."""

    CONTRADICTED = "the log disagrees with what was published"
    BLOCKED = "NATS or the stream stands in the way"


class Contradicted(Exception):
    """The log no longer holds what was published (cut or rewritten after it was anchored)."""


class Unavailable(Exception):
    """NATS cannot be read or written now; retried next round."""


class Unsafe(Unavailable):
    """The stream could lose anchors (deletes, purges or limits allowed): nothing is published
    to it until an operator fixes it."""


class Publisher:
    def __init__(self, nats_url: str, where: CheckpointStream) -> None:
        self.where = where
        self._url = nats_url
        self._client: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self.published = 0  # checkpoints this publisher stored in the stream
        self.position = 0  # the newest published position it saw or wrote
        self.contradicted = 0  # times it found the log disagreeing with what was published

    async def ready(self) -> None:
        """Connect and create or check the stream, logging what stands in the way."""
        await self._logged(self._jetstream())

    async def agrees(self, conn: Conn, keys: Mapping[str, Jwk]) -> bool:
        """False (logged) when the log contradicts the newest published checkpoint; True when
        it agrees or NATS cannot say (what is published later is checked again then)."""
        return await self._logged(self.newest(conn, keys)) is not Outcome.CONTRADICTED

    async def publish(self, conn: Conn, keys: Mapping[str, Jwk]) -> list[int]:
        """`publish_pending`, its failures logged; the positions published."""
        done = await self._logged(self.publish_pending(conn, keys))
        if isinstance(done, list) and done:
            log.info("checkpoints.published", positions=done, stream=self.where.stream)
            return done
        return []

    async def _logged(self, step: Awaitable[T]) -> T | Outcome:
        """The step's result, or what stood in its way (logged)."""
        try:
            return await step
        except Contradicted as exc:
            self.contradicted += 1
            event, reason, outcome = "published_contradicted", str(exc), Outcome.CONTRADICTED
        except Unsafe as exc:
            event, reason, outcome = "stream_unsafe", str(exc), Outcome.BLOCKED
        except Unavailable as exc:
            log.warning("checkpoints.publish_unavailable", error=str(exc))
            return Outcome.BLOCKED
        log.error(f"checkpoints.{event}", reason=reason)
        return outcome

    async def close(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    async def newest(self, conn: Conn, keys: Mapping[str, Jwk]) -> Checkpoint | None:
        """The newest published checkpoint, checked against the log; Contradicted if the log
        no longer reaches it or holds another hash there, Unavailable if NATS cannot say."""
        js = await self._jetstream()
        try:
            jws = await self.where.newest(js)
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"reading the newest checkpoint: {type(exc).__name__}") from None
        if jws is None:
            return None
        try:
            published = verify(jws, keys)
        except BadCheckpoint as exc:
            raise Contradicted(f"the newest published checkpoint does not verify: {exc}") from None
        held = await conn.fetchval(Q["hash_at"], published.position)
        if held is None:
            head = await conn.fetchval(Q["head"])
            raise Contradicted(
                f"checkpoint {published.position} was published but the log ends at {head}"
            )
        if bytes(held) != published.chain_hash:
            raise Contradicted(
                f"the log's hash at {published.position} is not the one published there"
            )
        self.position = max(self.position, published.position)
        return published

    async def publish_pending(self, conn: Conn, keys: Mapping[str, Jwk]) -> list[int]:
        """Publish the database's checkpoints above the newest published one, in order."""
        newest = await self.newest(conn, keys)
        after = 0 if newest is None else newest.position
        rows = await conn.fetch(Q["signed_after"], after)
        js = await self._jetstream()
        done: list[int] = []
        for row in rows:
            try:
                checkpoint = verify(row["jws"], keys)
            except BadCheckpoint as exc:
                raise Contradicted(f"checkpoint row {row['position']}: {exc}") from None
            held = None if row["hash"] is None else bytes(row["hash"])
            if (checkpoint.position, checkpoint.chain_hash) != (row["position"], held):
                raise Contradicted(
                    f"checkpoint row {row['position']} signs a hash the log no longer holds"
                )
            try:
                await self.where.publish(js, checkpoint)
            except (nats.errors.Error, TimeoutError) as exc:
                self._js = None  # look at the stream again before the next publish
                raise Unavailable(f"publishing {checkpoint.position}: {exc!r}") from None
            done.append(checkpoint.position)
            self.published += 1
            self.position = checkpoint.position
        return done

    async def _jetstream(self) -> JetStreamContext:
        """The connection's JetStream context, connecting and checking the stream first."""
        if self._js is not None and self._client is not None and self._client.is_connected:
            return self._js
        if self._client is None:
            try:
                self._client = await connect(
                    self._url, "authledger-checkpoints", within=CONNECT_TIMEOUT
                )
            except (OSError, nats.errors.Error, TimeoutError) as exc:
                raise Unavailable(f"connecting to NATS: {type(exc).__name__}") from None
        if not self._client.is_connected:
            raise Unavailable("NATS is reconnecting")
        js = self._client.jetstream(timeout=ACK_TIMEOUT)
        try:
            await self.where.ensure(js)
        except UnsafeStream as exc:
            raise Unsafe(str(exc)) from None
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"checking the stream: {type(exc).__name__}") from None
        self._js = js
        log.info("checkpoints.stream_ready", stream=self.where.stream, subject=self.where.subject)
        return js

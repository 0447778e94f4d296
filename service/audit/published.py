"""Signed checkpoints published off the database: a JetStream stream that refuses deletes and
purges, so whoever holds the database password cannot take an anchor back.

The checkpoint worker publishes every checkpoint it signed (the compact JWS as the message
body) to one subject, `AUTHLEDGER_CHECKPOINT_SUBJECT`, of its own stream,
`AUTHLEDGER_CHECKPOINT_STREAM` (defaults: `<NATS_SUBJECT_PREFIX>-checkpoints` and
`<NATS_STREAM>_CHECKPOINTS`; one token, so it never overlaps the event stream's
`<prefix>.>`). The stream is created with `deny_delete` and `deny_purge`, which JetStream
never lets an update cancel, and with no limits (no age, count or size), so nothing ages out.
`audit verify` reads the newest message and checks that the database's log reaches it and
agrees with it (service/audit/verify.py).

What it does not stop: a holder of NATS credentials allowed to delete or re-create the
stream. Give the service a NATS user that may publish to the subject and read the stream,
not one with the JetStream admin API (docs/security.md, finding 3).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType, StreamConfig, StreamInfo
from nats.js.errors import BadRequestError, NotFoundError

from service.audit.signed import Checkpoint

if TYPE_CHECKING:
    from service.settings import Settings

POSITION_HEADER = "Authledger-Checkpoint-Position"
MSG_ID_HEADER = "Nats-Msg-Id"
TIMEOUT = 5.0


class UnsafeStream(Exception):
    """The stream exists but could lose anchors (deletes, purges or limits allowed)."""


@dataclass(frozen=True)
class CheckpointStream:
    """Where checkpoints are published: the stream and its one subject."""

    stream: str = "AUTHLEDGER_CHECKPOINTS"
    subject: str = "authledger-checkpoints"

    @classmethod
    def from_settings(cls, settings: Settings) -> CheckpointStream:
        return cls(settings.checkpoint_stream, settings.checkpoint_subject)

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.stream,
            description="authledger signed chain checkpoints (append-only)",
            subjects=[self.subject],
            storage=StorageType.FILE,
            deny_delete=True,
            deny_purge=True,
            duplicate_window=120.0,
        )

    def unsafe(self, info: StreamInfo) -> list[str]:
        """Why this stream could lose an anchor (empty: it cannot, short of being deleted)."""
        cfg, reasons = info.config, []
        if not cfg.deny_delete:
            reasons.append("it allows deleting messages (deny_delete is off)")
        if not cfg.deny_purge:
            reasons.append("it allows purging (deny_purge is off)")
        limits = {
            "max_age": cfg.max_age or 0,
            "max_msgs": cfg.max_msgs if cfg.max_msgs is not None else -1,
            "max_bytes": cfg.max_bytes if cfg.max_bytes is not None else -1,
            "max_msgs_per_subject": cfg.max_msgs_per_subject,
        }
        unlimited = {"max_age": 0}
        for name, value in limits.items():
            if value != unlimited.get(name, -1):
                reasons.append(f"it drops old messages ({name} = {value})")
        if self.subject not in (cfg.subjects or []):
            reasons.append(f"it does not hold the subject {self.subject}")
        state = info.state
        if state.last_seq > 0 and state.messages == 0:
            reasons.append(f"it held {state.last_seq} message(s) and holds none now")
        return reasons

    async def ensure(self, js: JetStreamContext) -> StreamInfo:
        """The stream's info, creating it when missing; UnsafeStream if it could lose anchors."""
        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            try:
                info = await js.add_stream(self.config())
            except BadRequestError:  # created meanwhile by another worker
                info = await js.stream_info(self.stream)
        reasons = self.unsafe(info)
        if reasons:
            raise UnsafeStream(f"stream {self.stream}: {'; '.join(reasons)}")
        return info

    async def publish(self, js: JetStreamContext, checkpoint: Checkpoint) -> PubAck:
        """One checkpoint, acknowledged by the stream (a duplicate within the window is one)."""
        headers = {
            MSG_ID_HEADER: f"checkpoint:{checkpoint.position}:{checkpoint.chain_hash.hex()}",
            POSITION_HEADER: str(checkpoint.position),
        }
        return await js.publish(
            self.subject, checkpoint.jws.encode(), stream=self.stream, headers=headers
        )

    async def newest(self, js: JetStreamContext) -> str | None:
        """The newest published checkpoint's JWS, None when none was published."""
        try:
            msg = await js.get_last_msg(self.stream, self.subject)
        except NotFoundError:
            return None
        return (msg.data or b"").decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Published:
    """What `audit verify` compares the log with: the newest published checkpoint, or why
    there is nothing to compare (`unavailable`: then it cannot vouch for the log's tail)."""

    stream: str
    jws: str | None = None  # None: the stream holds no checkpoint yet
    unavailable: list[str] = field(default_factory=list)

    @classmethod
    def not_read(cls, stream: str, reason: str) -> Published:
        return cls(stream, None, [reason])


async def read_newest(js: JetStreamContext, where: CheckpointStream) -> Published:
    """The newest published checkpoint through an open connection, with the stream's state."""
    try:
        info = await js.stream_info(where.stream)
    except NotFoundError:
        return Published.not_read(where.stream, f"the stream {where.stream} does not exist")
    except (nats.errors.Error, TimeoutError) as exc:
        return Published.not_read(where.stream, f"NATS did not answer ({type(exc).__name__})")
    reasons = [f"the stream {where.stream} is unsafe: {r}" for r in where.unsafe(info)]
    try:
        jws = await where.newest(js)
    except (nats.errors.Error, TimeoutError) as exc:
        return Published.not_read(where.stream, f"NATS did not answer ({type(exc).__name__})")
    return Published(where.stream, jws, reasons)


async def read_published(nats_url: str | None, where: CheckpointStream) -> Published:
    """Connect, read the newest published checkpoint, disconnect (for `audit verify`)."""
    if not nats_url:
        return Published.not_read(where.stream, "AUTHLEDGER_NATS_URL is not set")
    client = NatsClient()
    try:
        await client.connect(
            nats_url, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0
        )
    except (OSError, nats.errors.Error, TimeoutError) as exc:
        return Published.not_read(where.stream, f"cannot reach NATS ({type(exc).__name__})")
    try:
        return await read_newest(client.jetstream(timeout=TIMEOUT), where)
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def connect(nats_url: str, name: str, *, within: float) -> NatsClient:
    """A connection that, once made, reconnects forever (the worker's); TimeoutError when it
    cannot be made `within` seconds (the half-made client is closed)."""
    client = NatsClient()

    async def quiet(_: Exception) -> None:  # the caller logs the outcome, once
        return None

    try:
        await asyncio.wait_for(
            client.connect(
                nats_url,
                name=name,
                connect_timeout=3,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                error_cb=quiet,
            ),
            within,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await client.close()
        raise
    return client

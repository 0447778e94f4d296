"""A resource server's copy of the revoked set, kept by the revocation feed.

`RevocationSubscriber` reads `<prefix>.<tenant>.revocations` from the JetStream stream with an
ordered consumer (in stream order, recreated by nats-py from the last sequence read after a
reconnect), verifies every message against the service's JWKS, and adds the credential to its
set (`subscriber/state.py`: SQLite, or memory) together with its checkpoint: the log position
P up to which it holds every revocation of its tenant, and the stream sequence last read.

It never trusts a partial stream. It resynchronises from the service's authoritative list
(`GET /admin/revocations?after=P`, with the admin token; each entry signed like a message and
verified the same way), then goes on reading, when:

- a message's `previous_position` (the log position of the tenant's previous revocation) is
  above P: a message between was lost (purged, deleted, never stored);
- at (re)start the stream no longer holds the messages after its sequence (the stream's first
  sequence is above it: purged, or aged out while the subscriber was away — a checkpoint too
  old), or the stream's sequences restarted (made anew);
- a message does not verify (a tampered or forged message is never applied, and the genuine
  one it may stand for is fetched instead). A message of a key no longer in the JWKS is
  treated the same way: the resync's entries are signed with a current key.

Without an admin token a gap cannot be repaired: it is logged as an error (with the positions
missed), counted in `stats.unresolved`, and `in_sync` turns False; the feed goes on.

Losing NATS and finding it again are logged as warnings (nats-py reconnects by itself). Given
`nats_url`, a function saying where NATS is now (`authledger subscribe` next to `authledger
dev` reads the data folder's stack.json), a subscriber cut off from NATS asks it every
`moved_check` seconds and, when it names another URL, connects there instead.

`start="resume"` (the default) resumes from the checkpoint, which for a new state means from
the beginning of the stream. `start="live"` (for `authledger subscribe` without
`--from-start`) begins after the tenant's last message in the stream, keeping the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from subscriber.keys import KeySet
from subscriber.revoked import RevokedSet
from subscriber.state import Checkpoint, State
from subscriber.wire import BadMessage, Revocation, subject

log = logging.getLogger("authledger.subscriber")
Source = Literal["feed", "resync"]
Listener = Callable[[Revocation, Source], None]
WhereNats = Callable[[], str | None]  # where NATS is now (None: no news)
RESYNC_PATH = "/admin/revocations"


class ResyncFailed(Exception):
    """The authoritative list could not be read or did not verify (retried)."""


@dataclass(frozen=True)
class SubscriberConfig:
    nats_url: str
    service_url: str  # the JWKS and /admin/revocations are read from here
    tenant: str = "default"
    state_path: str | Path | None = None  # None: in memory only
    admin_token: str | None = None  # needed to resynchronise
    stream: str = "AUTHLEDGER"
    subject_prefix: str = "authledger"
    start: Literal["resume", "live"] = "resume"
    page: int = 1000  # entries per resync request
    http_timeout: float = 10.0
    idle_heartbeat: float = 2.0  # the consumer's; two missed and it is made anew
    reconnect_wait: float = 0.5
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    moved_check: float = 1.0  # while cut off, how often to ask whether NATS moved

    @property
    def subject(self) -> str:
        return subject(self.subject_prefix, self.tenant)

    @property
    def feed(self) -> str:
        return f"{self.stream} {self.subject} {self.service_url.rstrip('/')}"


@dataclass
class SubscriberStats:
    received: int = 0  # messages read from the stream
    applied: int = 0  # revocations added to the set (from the feed or a resync)
    duplicates: int = 0  # messages at or below the checkpoint
    rejected: int = 0  # messages that did not verify
    gaps: int = 0  # holes found (chain, stream, unverifiable message)
    resyncs: int = 0  # resynchronisations done
    unresolved: int = 0  # gaps that could not be repaired (no admin token)


class RevocationSubscriber(RevokedSet):
    """Follows the revocation feed until cancelled; ask it `is_revoked` meanwhile."""

    def __init__(
        self,
        config: SubscriberConfig,
        *,
        on_revocation: Listener | None = None,
        nats_url: WhereNats | None = None,
    ) -> None:
        self.config = config
        self._where = nats_url
        self._closing = False
        self.stats = SubscriberStats()
        self.in_sync = True
        self.caught_up = asyncio.Event()  # everything the stream held at subscribe time is read
        self._listener = on_revocation
        self._state = State(config.state_path, config.feed)
        self._keys: KeySet | None = None
        self._http: httpx.AsyncClient | None = None
        self._delay = config.backoff_initial

    # -- asking (`RevokedSet`: len, is_revoked, is_revoked_credential) -------------------

    @property
    def position(self) -> int | None:
        return self._state.checkpoint.position

    @property
    def seq(self) -> int:
        return self._state.checkpoint.seq

    # -- following -------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the feed until cancelled; outages are retried with back-off."""
        cfg = self.config
        headers = {"Authorization": f"Bearer {cfg.admin_token}"} if cfg.admin_token else {}
        self._delay = cfg.backoff_initial
        self._closing = False
        url = cfg.nats_url
        try:
            async with httpx.AsyncClient(
                base_url=cfg.service_url.rstrip("/"), timeout=cfg.http_timeout, headers=headers
            ) as http:
                self._http, self._keys = http, KeySet(http)
                while True:  # one connection per NATS URL
                    nc = NATS()
                    try:
                        url = await self._connect(nc, url)
                        url = await self._follow_until_moved(nc, url)
                    finally:
                        self._closing = True
                        with contextlib.suppress(Exception):
                            await nc.close()
                        self._closing = False
        finally:
            self._state.close()

    async def _connect(self, nc: NATS, url: str) -> str:
        """Connect to `url` (or to where NATS moved meanwhile); the URL connected to."""
        cfg = self.config

        async def disconnected() -> None:
            if not self._closing:
                log.warning("NATS connection lost (%s); reconnecting", url)

        async def reconnected() -> None:
            log.warning(
                "NATS reconnected (%s)", nc.connected_url.geturl() if nc.connected_url else url
            )

        moved = url != cfg.nats_url
        while True:
            try:
                await nc.connect(
                    url,
                    name=f"authledger-subscriber-{cfg.tenant}",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=cfg.reconnect_wait,  # type: ignore[arg-type]
                    error_cb=self._nats_error,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                )
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                await self._pause(f"NATS unreachable at {url}", exc)
                new = self._moved(url)
                moved, url = moved or new is not None, new or url
            else:
                if moved:
                    log.warning("NATS connected (%s)", url)
                return url

    async def _follow_until_moved(self, nc: NATS, url: str) -> str:
        """Follow the feed on `nc` until NATS is found at another URL; that URL."""
        follow = asyncio.create_task(self._follow_forever(nc.jetstream()))
        moved = asyncio.create_task(self._watch_moves(nc, url))
        try:
            await asyncio.wait([follow, moved], return_when=asyncio.FIRST_COMPLETED)
            if follow.done():
                follow.result()  # a failure the retries do not cover (e.g. a wrong feed)
            return moved.result()
        finally:
            await cancel_until_done(follow, moved)

    async def _follow_forever(self, js: JetStreamContext) -> None:
        while True:
            try:
                await self._follow(js)
            except (nats.errors.Error, TimeoutError, httpx.HTTPError, ResyncFailed) as exc:
                await self._pause("feed interrupted", exc)

    async def _watch_moves(self, nc: NATS, url: str) -> str:
        """Return the new URL once NATS, while `nc` is cut off, is said to be elsewhere."""
        while True:
            await asyncio.sleep(self.config.moved_check)
            if nc.is_connected:
                continue
            new = self._moved(url)
            if new is not None:
                log.warning("NATS moved: %s now; connecting there (was %s)", new, url)
                return new

    def _moved(self, url: str) -> str | None:
        """Where NATS is said to be now, when that is not `url`."""
        if self._where is None:
            return None
        try:
            new = self._where()
        except Exception as exc:  # a source that fails says nothing new
            log.debug("asking where NATS is failed: %r", exc)
            return None
        return new if new and new != url else None

    async def _pause(self, what: str, exc: BaseException) -> None:
        log.warning("%s, retrying in %.1fs: %r", what, self._delay, exc)
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, self.config.backoff_max)

    async def _nats_error(self, exc: Exception) -> None:
        log.debug("nats: %r", exc)

    async def _follow(self, js: JetStreamContext) -> None:
        cfg = self.config
        await self._check_stream(js)
        start = self._state.checkpoint.seq + 1
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        sub = await js.subscribe(
            cfg.subject,
            stream=cfg.stream,
            ordered_consumer=True,
            config=config,
            idle_heartbeat=cfg.idle_heartbeat,
        )
        self._delay = cfg.backoff_initial  # subscribed: the next failure starts afresh
        try:
            if (await sub.consumer_info()).num_pending == 0:
                self.caught_up.set()
            while True:
                try:
                    msg = await sub.next_msg(timeout=cfg.idle_heartbeat * 5)
                except nats.errors.TimeoutError:
                    continue
                await self._on_message(msg)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _check_stream(self, js: JetStreamContext) -> None:
        """Before reading: is everything after our sequence still in the stream?"""
        cfg, checkpoint = self.config, self._state.checkpoint
        state = (await js.stream_info(cfg.stream)).state
        if cfg.start == "live" and checkpoint == Checkpoint(0, 0) and not len(self._state):
            await self._start_live(js, state.last_seq)
            return
        # What the stream no longer holds was published before now, so at positions a resync
        # covers: afterwards the sequences below its first one are accounted for.
        accounted = max(state.first_seq - 1, 0)
        if state.last_seq < checkpoint.seq:
            self._state.move(checkpoint.position, 0)
            await self._gap(f"stream sequences restarted (last {state.last_seq})")
            self._state.move(self.position, accounted)
        elif state.first_seq > checkpoint.seq + 1:
            await self._gap(f"stream begins at {state.first_seq}, we read up to {checkpoint.seq}")
            self._state.move(self.position, accounted)

    async def _start_live(self, js: JetStreamContext, last_seq: int) -> None:
        """Begin after the tenant's last message, at its position if it verifies."""
        try:
            last = await js.get_last_msg(self.config.stream, self.config.subject)
        except NotFoundError:
            self._state.move(None, last_seq)
            return
        seq = last.seq or last_seq
        try:
            claims = await self._verified(last.data or b"")
        except BadMessage:
            self._state.move(None, seq)
        else:
            self._state.move(claims.position, seq)

    async def _on_message(self, msg: Msg) -> None:
        try:
            await self._read(msg)
        finally:
            if msg.metadata.num_pending == 0:
                self.caught_up.set()

    async def _read(self, msg: Msg) -> None:
        seq, checkpoint = msg.metadata.sequence.stream, self._state.checkpoint
        if seq <= checkpoint.seq:
            return
        self.stats.received += 1
        try:
            claims = await self._verified(msg.data)
        except BadMessage as exc:
            self.stats.rejected += 1
            log.warning("revocation message at seq %d rejected: %s", seq, exc)
            await self._gap(f"message at seq {seq} did not verify")
            self._state.move(self.position, seq)  # passed over: the resync said what is true
            return
        held = checkpoint.position
        if held is not None and claims.position <= held:
            self.stats.duplicates += 1
            self._state.move(held, seq)
            return
        if held is not None and claims.previous_position > held:
            await self._gap(f"previous revocation at {claims.previous_position}, held {held}")
            held = self.position
            if held is not None and claims.position <= held:
                self._state.move(held, seq)
                return
        self._apply([claims], claims.position, seq, "feed")

    def _apply(
        self, items: list[Revocation], position: int | None, seq: int, source: Source
    ) -> None:
        fresh = self._state.apply(items, position, seq)
        self.stats.applied += len(fresh)
        if self._listener is not None:
            for item in fresh:
                self._listener(item, source)

    async def _gap(self, why: str) -> None:
        """Resynchronise from the authoritative list (or say loudly that we cannot). The
        stream sequence stays where it was: the caller moves it once the message that revealed
        the gap is dealt with, so a crash meanwhile reads that message again."""
        self.stats.gaps += 1
        checkpoint = self._state.checkpoint
        if self._http is None or not self.config.admin_token:
            self.stats.unresolved += 1
            self.in_sync = False
            log.error("revocation feed gap NOT repaired (no admin token): %s", why)
            return
        log.warning("revocation feed gap: %s; resynchronising after %s", why, checkpoint.position)
        after = checkpoint.position or 0
        while True:
            page = await self._resync_page(after)
            through = max(int(page["through"]), after)
            self._apply(page["items"], through, checkpoint.seq, "resync")
            after = through
            if not page["more"]:
                break
        self.stats.resyncs += 1
        self.in_sync = True
        log.info("revocation feed resynchronised up to %d", after)

    async def _verified(self, token: str | bytes) -> Revocation:
        if self._keys is None:
            raise RuntimeError("not running")
        claims = await self._keys.verify(token)
        if claims.tenant != self.config.tenant:
            raise BadMessage(f"a message of tenant {claims.tenant}")
        return claims

    async def _resync_page(self, after: int) -> dict[str, Any]:
        if self._http is None:
            raise RuntimeError("not running")
        response = await self._http.get(
            RESYNC_PATH, params={"after": after, "limit": self.config.page}
        )
        if response.status_code != 200:
            raise ResyncFailed(f"{RESYNC_PATH} answered {response.status_code}")
        body = response.json()
        try:
            items = [await self._verified(entry["signed"]) for entry in body["revocations"]]
        except (BadMessage, KeyError, TypeError) as exc:
            raise ResyncFailed(f"{RESYNC_PATH} entry refused: {exc!r}") from None
        return {"items": items, "through": body["through"], "more": bool(body["more"])}


async def cancel_until_done(*tasks: asyncio.Task[Any]) -> None:
    """Cancel `tasks` and wait for them, cancelling again while any runs on: on Python 3.11 a
    cancel that lands in the loop turn where a `wait_for` inside (nats-py's `next_msg`)
    completes is swallowed, and the task would go on reading, so a stop would hang."""
    while True:
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=0.5)
        if not pending:
            break
    await asyncio.gather(*tasks, return_exceptions=True)

"""The mailer: claim e-mails from the `mail_outbox` table, sent over SMTP outside any request.

`service.mail.outbox.claim_mail_write` is the row, one of the writes of the transaction that
appends `claim.attempt_started`, so the row exists exactly when the event does (spec §10 W15). It
holds the recipient sealed (service/pii) and the `cvt_…` token under AES-GCM (aad = attempt
id); both are opened in memory just before the send, and the token is wiped once the row is
sent, failed or expired. A row of kind `sign_in` (the v0.6 pages' sign-in link, queued by
service/signin/email_link.py with its `lgt_…` token, its attempt id the link's `sgn_…`) is
sent the same way, as a sign-in mail (`SignInMail`, workers/mail_templates.py).

Mailers may run side by side: each round expires rows whose link window is over, claims due
rows (`FOR UPDATE SKIP LOCKED`, then a lease), reads their recipients' data keys in one query,
sends them over a few SMTP connections kept open while mail flows (workers/smtp_lanes.py), and
records each failure at once and a lane's sends together once its share of the round is done.
Failures are retried with capped exponential back-off and jitter (service/backoff.py) up to
`max_tries`, then the row is `failed`. Between rounds it sleeps until a NOTIFY on
`authledger_mail` or the next due retry or lease end (workers/base/sleeper.py); logs name the
attempt id, never the address or the token. Database outages restart the loop (workers/base);
anything else ends it, for the runner to report.

Delivery is at least once: a crash between the SMTP server's acceptance and the `sent` update
(made when the lane's share of the round is done, at most `batch / connections` sends later:
one statement instead of a commit a mail), or a send outliving its lease, can send a mail
twice; every copy has the Message-ID `<attempt_id@authledger>` (a sign-in's
`<sgn_…@authledger>`), for dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import formataddr
from typing import TYPE_CHECKING, Any

import aiosmtplib
import asyncpg
import structlog

from events.clock import Clock, SystemClock
from events.planning import fetch_planned_now
from events.sessions import keeps_session_state
from events.sql import load_queries
from service.backoff import Backoff, jittered
from service.crypto.pii import Sealer
from service.domain.tenants import DEFAULT_TENANT
from service.mail.outbox import CHANNEL, open_link_token
from service.observability.logging import redact_url
from service.settings import ConfigError
from service.tenancy.directory import TenantDirectory
from workers.base.sleeper import Notified, Sleeper
from workers.base.supervise import supervise
from workers.base.watch import Watched
from workers.mail_templates import (
    ClaimMail,
    SignInMail,
    build_message,
    claim_link,
    sender_for,
    sign_in_link,
)
from workers.smtp_lanes import SmtpLane, SmtpLanes
from workers.smtp_url import smtp_options

if TYPE_CHECKING:
    from service.settings import Settings

Q = load_queries("workers", "mailer.sql")
log = structlog.get_logger("workers.mailer")
_SECRETS = re.compile(r"\S*@\S*|(?:cvt|lgt)_[\w-]+")  # addresses, link tokens: for error texts
_jitter = random.SystemRandom()


class TlsUnavailable(Exception):
    """The server offered no STARTTLS, so nothing was sent (the row is retried)."""


@dataclass(frozen=True)
class MailerConfig:
    smtp_url: str
    public_url: str
    sender: str = "no-reply@localhost"  # the envelope and From address
    service_name: str = "authledger"
    max_tries: int = 8
    backoff_initial: float = 5.0  # seconds before the second try; doubles after each
    backoff_max: float = 300.0
    lease: float = 120.0  # a claimed row is left alone this long; must exceed send_timeout
    send_timeout: float = 60.0  # one lane's SMTP conversation in a round (connect included)
    batch: int = 16  # rows claimed per round
    connections: int = 4  # SMTP connections (lanes) a round's rows are spread over
    keep_alive: float = 30.0  # an idle connection is closed after this many seconds
    idle_timeout: float = 60.0  # longest sleep: bounds a NOTIFY lost while reconnecting
    restart_max: float = 30.0  # back-off cap when the database is unreachable

    def __post_init__(self) -> None:
        if min(self.max_tries, self.batch, self.connections) < 1 or self.lease <= self.send_timeout:
            raise ValueError("needs max_tries, batch and connections >= 1 and lease > send_timeout")


def describe_error(exc: BaseException) -> str:
    """What went wrong, fit for the row and the logs: addresses and tokens blanked out."""
    codes = [getattr(exc, "code", None), *(r.code for r in getattr(exc, "recipients", []))]
    text = _SECRETS.sub("<redacted>", str(exc))[:200]
    return " ".join(str(p) for p in (type(exc).__name__, *codes, text) if p not in (None, ""))


@dataclass
class MailerStats:
    sent: int = 0  # mails this mailer had accepted by the SMTP server
    retried: int = 0  # sends that failed and wait for another try
    failed: int = 0  # rows given up (tries spent, or nobody to write to)
    expired: int = 0  # rows whose link window ended unsent
    rounds: int = 0  # rounds done (expire, claim, send)
    sleeping: bool = False
    asleep_until: datetime | None = None  # the next due row it sleeps toward (None: none)


class Mailer:
    """Sends the outbox's claim e-mails until cancelled; see the module docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: MailerConfig,
        *,
        secret_key: str | bytes,
        sealer: Sealer,
        clock: Clock | None = None,
        tenants: TenantDirectory | None = None,
    ) -> None:
        self._pool = pool
        self.config = config
        self._tenants = tenants  # other tenants' links and names; None: the default's only
        self._secret_key = secret_key
        self._sealer = sealer
        self._clock = clock or SystemClock()
        self._lanes = SmtpLanes(
            smtp_options(config.smtp_url),
            config.send_timeout,
            config.connections,
            config.keep_alive,
        )
        self._watch = Watched(MailerStats())
        self.stats = self._watch.stats
        self._restart = Backoff(0.1, config.restart_max)  # after a database failure
        self._sleeper = Sleeper(self._clock, self._watch)
        self._wake = Notified()  # set by a NOTIFY on CHANNEL

    @property
    def sent(self) -> int:
        """Mails this mailer had accepted by the SMTP server."""
        return self.stats.sent

    async def wait_for(self, predicate: Callable[[MailerStats], bool]) -> MailerStats:
        """Until `predicate(stats)` holds after a round, a send or on falling asleep (bound it
        with `asyncio.timeout`): for tests and tools, await a state instead of polling it."""
        return await self._watch.wait_for(predicate)

    async def run(self) -> None:
        """Send until cancelled; database outages restart the loop after a pause, and anything
        else ends it (a bug, for the runner to report)."""
        log.info("mailer.started", smtp=redact_url(self.config.smtp_url))
        try:
            await supervise("mailer", self._session, self._restart, describe=describe_error)
        finally:
            log.info("mailer.stopped", sent=self.stats.sent)

    async def _session(self) -> None:
        """Rounds until something fails (or the task is cancelled)."""
        wake = self._wake
        async with self._pool.acquire() as listener:
            keeps_session_state(listener)  # the LISTEN: the release's reset ends it
            await listener.add_listener(CHANNEL, wake.notified)
            try:
                while True:
                    wake.clear()  # before looking, so a NOTIFY from now on wakes us
                    if await self._round():
                        continue  # a full batch: more may be due
                    due: datetime | None = await self._pool.fetchval(Q["next_due"])
                    if due is not None and due <= self._clock.now():
                        await self._sleeper.sleep(wake, None, 0.01)  # claimable soon, not now
                    else:  # until a NOTIFY or the next due row (or time to close idle lanes)
                        cap = self.config.idle_timeout
                        if self._lanes.open:
                            cap = min(cap, self._lanes.keep_alive)
                        await self._sleeper.sleep(wake, due, cap)
                    await self._lanes.close_idle()
                    if listener.is_closed():
                        raise ConnectionError("the LISTEN connection was lost")
            finally:  # a listener left on a released connection makes asyncpg warn
                with contextlib.suppress(Exception):
                    await listener.remove_listener(CHANNEL, wake.notified)
                await self._lanes.close()

    async def _round(self) -> bool:
        """Expire, claim and send one batch; True when the batch was full."""
        now = self._clock.now()
        for row in await self._pool.fetch(Q["expire"], now):
            self.stats.expired += 1
            log.info("mailer.expired", attempt_id=row["attempt_id"])
        lease_end = now + timedelta(seconds=self.config.lease)
        rows = await self._pool.fetch(Q["claim"], now, lease_end, self.config.batch)
        # every recipient's data key in one read, not one a mail (the cache serves `open`)
        await self._sealer.preload(self._pool, [r["recipient_sealed"] for r in rows])
        deadline = asyncio.get_running_loop().time() + self.config.send_timeout
        results = await asyncio.gather(
            *(self._send_over(lane, share, deadline) for lane, share in self._lanes.spread(rows)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self._restart.reset()
        self.stats.rounds += 1
        self._watch.changed()
        return len(rows) == self.config.batch

    async def _send_over(self, lane: SmtpLane, rows: list[asyncpg.Record], deadline: float) -> None:
        """A lane's share of the round, one mail after another on its connection; the sent
        ones are recorded together when the share is done (or has failed part-way)."""
        sent: list[str] = []
        try:
            for row in rows:
                if await self._deliver(row, lane, deadline):
                    sent.append(row["attempt_id"])
        finally:
            if sent:
                await self._mark_sent(sent)

    async def _deliver(self, row: asyncpg.Record, lane: SmtpLane, deadline: float) -> bool:
        """Send one claimed row; True when the SMTP server accepted it (the caller records
        that), else the outcome is recorded here. Database errors propagate."""
        attempt_id: str = row["attempt_id"]
        tries: int = row["tries"]
        if row["link_expires_at"] <= self._clock.now():
            await self._pool.execute(Q["mark_expired"], attempt_id, tries)
            self.stats.expired += 1
            log.info("mailer.expired", attempt_id=attempt_id)
            return False
        try:
            recipient = await self._sealer.open(self._pool, row["recipient_sealed"])
            if recipient is None:  # the person was erased: nobody to write to, ever
                await self._pool.execute(Q["mark_failed"], attempt_id, tries, "recipient erased")
                self.stats.failed += 1
                log.warning("mailer.failed", attempt_id=attempt_id, error="recipient erased")
                return False
            token = open_link_token(self._secret_key, attempt_id, row["link_token_sealed"])
            await self._send(row, recipient, token, lane, deadline)
        except (asyncpg.PostgresError, asyncpg.InterfaceError):
            raise  # the database: the round starts over, the lease ends, the row is retried
        except Exception as exc:  # SMTP, network, timeout, a value that does not open
            await self._failed(attempt_id, tries, exc)
            return False
        return True

    async def _face(self, tenant_id: str) -> tuple[str, str, str]:
        """(public URL, service name, sender) of the tenant the mail is for."""
        if self._tenants is None or tenant_id == DEFAULT_TENANT:
            return self.config.public_url, self.config.service_name, self.config.sender
        tenant = self._tenants.get(tenant_id)
        if tenant is None:  # created since we last looked
            await self._tenants.load(self._pool)
            tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise LookupError(f"tenant {tenant_id} is unknown or disabled")
        return tenant.issuer, tenant.resource_name, sender_for(tenant.issuer)

    async def _send(
        self, row: asyncpg.Record, recipient: str, token: str, lane: SmtpLane, deadline: float
    ) -> None:
        public_url, service_name, sender_address = await self._face(row["tenant_id"])
        mail: ClaimMail | SignInMail
        if row["kind"] == "sign_in":
            mail = SignInMail(
                link_id=row["attempt_id"],
                recipient=recipient,
                link=sign_in_link(public_url, token),
                link_expires_at=row["link_expires_at"],
                service_name=service_name,
            )
        else:
            mail = ClaimMail(
                attempt_id=row["attempt_id"],
                registration_id=row["registration_id"],
                recipient=recipient,
                link=claim_link(public_url, token),
                link_expires_at=row["link_expires_at"],
                service_name=service_name,
            )
        sender = formataddr((service_name, sender_address), charset="utf-8")
        message = build_message(mail, sender=sender, now=self._clock.now())
        try:
            async with asyncio.timeout_at(deadline):
                await lane.send(message, sender_address, recipient)
        except aiosmtplib.SMTPException as exc:
            if "STARTTLS" in str(exc) and "not supported" in str(exc):
                raise TlsUnavailable(
                    "the SMTP server offers no STARTTLS: nothing sent in clear text (a local "
                    "test sink only: add ?tls=none to AUTHLEDGER_SMTP_URL)"
                ) from None
            raise

    async def _mark_sent(self, attempt_ids: list[str]) -> None:
        """Record sends, a lane's share in one statement; past a few seconds of database
        trouble, the mails are sent again."""
        for delay in (0.1, 0.2, 0.4, 0.8, 1.6):
            try:
                # planned for these ids: a kept plan made on a small outbox scans it whole
                await fetch_planned_now(self._pool, Q["mark_sent"], attempt_ids, self._clock.now())
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await asyncio.sleep(delay)
                continue
            self.stats.sent += len(attempt_ids)
            self._watch.changed()
            for attempt_id in attempt_ids:
                log.info("mailer.sent", attempt_id=attempt_id)
            return
        for attempt_id in attempt_ids:
            log.error("mailer.sent_unrecorded", attempt_id=attempt_id)

    async def _failed(self, attempt_id: str, tries: int, exc: BaseException) -> None:
        error = describe_error(exc)
        cfg = self.config
        if tries >= cfg.max_tries:
            await self._pool.execute(Q["mark_failed"], attempt_id, tries, error)
            self.stats.failed += 1
            log.warning("mailer.failed", attempt_id=attempt_id, tries=tries, error=error)
            return
        delay = jittered(cfg.backoff_initial, cfg.backoff_max, tries - 1, _jitter.random)
        next_try = self._clock.now() + timedelta(seconds=delay)
        await self._pool.execute(Q["mark_retry"], attempt_id, tries, next_try, error)
        self.stats.retried += 1
        level = log.warning if isinstance(exc, TlsUnavailable) else log.info
        level(
            "mailer.retry", attempt_id=attempt_id, tries=tries, delay=round(delay, 3), error=error
        )


def mailer_worker(settings: Settings, pool: asyncpg.Pool) -> Coroutine[Any, Any, None]:
    """The mailer as `workers.runner` runs it; needs AUTHLEDGER_SMTP_URL and _SECRET_KEY."""
    if not settings.smtp_url:
        raise ConfigError("AUTHLEDGER_SMTP_URL: required by the mailer (claim e-mails)")
    if not settings.secret_key:
        raise ConfigError("AUTHLEDGER_SECRET_KEY: required by the mailer")
    try:
        smtp_options(settings.smtp_url)
    except ValueError as exc:
        raise ConfigError(f"AUTHLEDGER_SMTP_URL: {exc}") from None
    url, name = settings.public_url, settings.resource_name
    config = MailerConfig(settings.smtp_url, url, sender=sender_for(url), service_name=name)
    secret = settings.secret_key
    tenants = TenantDirectory(settings)
    return Mailer(pool, config, secret_key=secret, sealer=Sealer(secret), tenants=tenants).run()

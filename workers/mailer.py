"""The mailer: claim e-mails from the `mail_outbox` table, sent over SMTP outside any request.

`enqueue_claim_mail` runs in the transaction that appends `claim.attempt_started`, so the row
exists exactly when the event does (spec §10 W15). It holds the recipient sealed (service/pii)
and the `cvt_…` token under AES-GCM (aad = attempt id); both are opened in memory just before
the send, and the token is wiped once the row is sent, failed or expired.

Mailers may run side by side: each round expires rows whose link window is over, claims due
rows (`FOR UPDATE SKIP LOCKED`, then a lease), sends them and records each outcome at once.
Failures are retried with capped exponential back-off and jitter up to `max_tries`, then the
row is `failed`. Between rounds it sleeps until a NOTIFY on `authledger_mail` or the next due
retry or lease end; logs name the attempt id, never the address or the token.

Delivery is at least once: a crash between the SMTP server's acceptance and the `sent` update
(made right after the reply to keep that window small), or a send outliving its lease, can
send a mail twice; every copy has the Message-ID `<attempt_id@authledger>`, for dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import formataddr
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import asyncpg
import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.clock import Clock, SystemClock
from events.sql import load_queries
from service.crypto import derive_key
from service.domain.tenants import DEFAULT_TENANT
from service.logging import redact_url
from service.pii import Db, Sealer
from service.settings import ConfigError
from service.tenants import TenantDirectory
from workers.base.watch import Watched
from workers.mail_templates import ClaimMail, build_message, claim_link, sender_for

if TYPE_CHECKING:
    from service.settings import Settings

MAIL_OUTBOX_KEY = b"authledger mail outbox v1"  # derive_key purpose of the link-token key
CHANNEL = "authledger_mail"
NONCE_BYTES = 12
Q = load_queries("workers", "mailer.sql")
log = structlog.get_logger("workers.mailer")
_SECRETS = re.compile(r"\S*@\S*|cvt_[\w-]+")  # addresses and link tokens, for error texts
_jitter = secrets.SystemRandom()


def seal_link_token(secret_key: str | bytes, attempt_id: str, token: str) -> bytes:
    """nonce || AES-GCM of the token under the outbox key, bound to its attempt id."""
    nonce = os.urandom(NONCE_BYTES)
    aead = AESGCM(derive_key(secret_key, MAIL_OUTBOX_KEY))
    return nonce + aead.encrypt(nonce, token.encode(), attempt_id.encode())


def open_link_token(secret_key: str | bytes, attempt_id: str, sealed: bytes) -> str:
    """The plain link token; InvalidTag when it was moved, altered or sealed under another key."""
    aead = AESGCM(derive_key(secret_key, MAIL_OUTBOX_KEY))
    return aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], attempt_id.encode()).decode()


async def enqueue_claim_mail(
    conn: Db,
    *,
    secret_key: str | bytes,
    tenant_id: str,
    registration_id: str,
    attempt_id: str,
    recipient_sealed: str,
    link_token: str,
    link_expires_at: datetime,
    now: datetime,
) -> None:
    """Queue the claim e-mail of a new attempt, inside the append's transaction (idempotent).

    The caller seals the address (service.pii) under the subject of the event's
    `email_sealed`, the attempt's own, so one erase covers both and the seal costs no round
    trip here.
    """
    if now.tzinfo is None or link_expires_at.tzinfo is None:
        raise ValueError("enqueue_claim_mail needs timezone-aware times")
    token = seal_link_token(secret_key, attempt_id, link_token)
    await conn.execute(
        Q["enqueue"], attempt_id, tenant_id, registration_id, recipient_sealed, token,
        link_expires_at, now,
    )  # fmt: skip


# `?tls=` in AUTHLEDGER_SMTP_URL: `starttls` (the default for smtp://) or `none`, the explicit
# opt-out for a local test sink (security issue 12, finding 9). smtps:// is implicit TLS.
TLS_OPTIONS = ("starttls", "none")


class TlsUnavailable(Exception):
    """The server offered no STARTTLS, so nothing was sent (the row is retried)."""


def smtp_options(url: str) -> dict[str, Any]:
    """`aiosmtplib.send` options for an SMTP URL; ValueError names what is wrong with it.

    - `smtp://[user:password@]host[:port]`: STARTTLS required (port 25 by default); a server
      that does not offer it gets no mail and no password.
    - `smtps://[user:password@]host[:port]`: implicit TLS (port 465 by default).
    - `smtp://host:port?tls=none`: plain text, for a local test sink only; no credentials.

    Certificates are always verified (a private CA: `SSL_CERT_FILE`).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"expected smtp://host[:port] or smtps://…, got {redact_url(url)!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"tls"})
    tls_values = query.get("tls", ["starttls"])
    if unknown or len(tls_values) != 1 or tls_values[0] not in TLS_OPTIONS:
        raise ValueError(f"the only query option is tls={'|'.join(TLS_OPTIONS)}")
    implicit = parts.scheme == "smtps"
    plain = tls_values[0] == "none"
    if implicit and plain:
        raise ValueError("smtps:// is TLS; tls=none goes with smtp:// only")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if plain and (user or password):
        raise ValueError("tls=none sends in clear text: it takes no user or password")
    return {
        "hostname": parts.hostname,
        "port": parts.port or (465 if implicit else 25),
        "use_tls": implicit,
        "start_tls": not (implicit or plain),  # required, never opportunistic
        "validate_certs": True,
        "username": user,
        "password": password,
    }


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
    send_timeout: float = 60.0  # one whole SMTP conversation
    batch: int = 16  # rows claimed (and sent concurrently) per round
    idle_timeout: float = 60.0  # longest sleep: bounds a NOTIFY lost while reconnecting
    restart_max: float = 30.0  # back-off cap when the database is unreachable

    def __post_init__(self) -> None:
        if self.max_tries < 1 or self.batch < 1 or self.lease <= self.send_timeout:
            raise ValueError("needs max_tries >= 1, batch >= 1 and lease > send_timeout")


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
        self._smtp = smtp_options(config.smtp_url)
        self._wake = asyncio.Event()
        self._pause = 0.1  # before restarting after a database failure; reset by progress
        self._watch = Watched(MailerStats())
        self.stats = self._watch.stats

    @property
    def sent(self) -> int:
        """Mails this mailer had accepted by the SMTP server."""
        return self.stats.sent

    async def wait_for(self, predicate: Callable[[MailerStats], bool]) -> MailerStats:
        """Until `predicate(stats)` holds after a round, a send or on falling asleep (bound it
        with `asyncio.timeout`): for tests and tools, await a state instead of polling it."""
        return await self._watch.wait_for(predicate)

    async def run(self) -> None:
        """Send until cancelled; database outages restart the loop after a pause."""
        log.info("mailer.started", smtp=redact_url(self.config.smtp_url))
        try:
            while True:
                try:
                    await self._session()
                except Exception as exc:
                    pause, self._pause = self._pause, min(self._pause * 2, self.config.restart_max)
                    log.warning("mailer.restart", error=describe_error(exc), delay=pause)
                    await asyncio.sleep(pause)
        finally:
            log.info("mailer.stopped", sent=self.sent)

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _session(self) -> None:
        """Rounds until something fails (or the task is cancelled)."""
        async with self._pool.acquire() as listener:
            await listener.add_listener(CHANNEL, self._notified)
            try:
                while True:
                    self._wake.clear()  # before looking, so a NOTIFY from now on wakes us
                    if await self._round():
                        continue  # a full batch: more may be due
                    due: datetime | None = await self._pool.fetchval(Q["next_due"])
                    idle = self.config.idle_timeout
                    wait = (due - self._clock.now()).total_seconds() if due else idle
                    # Until a NOTIFY or the next due row. Not wait_for: on Python 3.11 it
                    # returns normally when the wake and a cancel land in one loop turn, so a
                    # NOTIFY arriving with the stop would swallow the cancel.
                    self.stats.sleeping = True
                    self._watch.changed()
                    try:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(min(max(wait, 0.01), idle)):
                                await self._wake.wait()
                    finally:
                        self.stats.sleeping = False
                    if listener.is_closed():
                        raise ConnectionError("the LISTEN connection was lost")
            finally:  # a listener left on a released connection makes asyncpg warn
                with contextlib.suppress(Exception):
                    await listener.remove_listener(CHANNEL, self._notified)

    async def _round(self) -> bool:
        """Expire, claim and send one batch; True when the batch was full."""
        now = self._clock.now()
        for row in await self._pool.fetch(Q["expire"], now):
            self.stats.expired += 1
            log.info("mailer.expired", attempt_id=row["attempt_id"])
        lease_end = now + timedelta(seconds=self.config.lease)
        rows = await self._pool.fetch(Q["claim"], now, lease_end, self.config.batch)
        results = await asyncio.gather(
            *(self._deliver(row) for row in rows), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self._pause = 0.1
        self.stats.rounds += 1
        self._watch.changed()
        return len(rows) == self.config.batch

    async def _deliver(self, row: asyncpg.Record) -> None:
        """Send one claimed row and record the outcome; database errors propagate."""
        attempt_id: str = row["attempt_id"]
        tries: int = row["tries"]
        if row["link_expires_at"] <= self._clock.now():
            await self._pool.execute(Q["mark_expired"], attempt_id, tries)
            self.stats.expired += 1
            log.info("mailer.expired", attempt_id=attempt_id)
            return
        try:
            recipient = await self._sealer.open(self._pool, row["recipient_sealed"])
            if recipient is None:  # the person was erased: nobody to write to, ever
                await self._pool.execute(Q["mark_failed"], attempt_id, tries, "recipient erased")
                self.stats.failed += 1
                log.warning("mailer.failed", attempt_id=attempt_id, error="recipient erased")
                return
            token = open_link_token(self._secret_key, attempt_id, row["link_token_sealed"])
            await self._send(row, recipient, token)
        except (asyncpg.PostgresError, asyncpg.InterfaceError):
            raise  # the database: the round starts over, the lease ends, the row is retried
        except Exception as exc:  # SMTP, network, timeout, a value that does not open
            await self._failed(attempt_id, tries, exc)
            return
        await self._mark_sent(attempt_id)

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

    async def _send(self, row: asyncpg.Record, recipient: str, token: str) -> None:
        public_url, service_name, sender_address = await self._face(row["tenant_id"])
        mail = ClaimMail(
            attempt_id=row["attempt_id"],
            registration_id=row["registration_id"],
            recipient=recipient,
            link=claim_link(public_url, token),
            link_expires_at=row["link_expires_at"],
            service_name=service_name,
        )
        sender = formataddr((service_name, sender_address))
        message = build_message(mail, sender=sender, now=self._clock.now())
        try:
            async with asyncio.timeout(self.config.send_timeout):
                await aiosmtplib.send(
                    message,
                    sender=sender_address,
                    recipients=[recipient],
                    timeout=self.config.send_timeout,
                    **self._smtp,
                )
        except aiosmtplib.SMTPException as exc:
            if "STARTTLS" in str(exc) and "not supported" in str(exc):
                raise TlsUnavailable(
                    "the SMTP server offers no STARTTLS: nothing sent in clear text (a local "
                    "test sink only: add ?tls=none to AUTHLEDGER_SMTP_URL)"
                ) from None
            raise

    async def _mark_sent(self, attempt_id: str) -> None:
        """Record the send at once; past a few seconds of database trouble, the mail is resent."""
        for delay in (0.1, 0.2, 0.4, 0.8, 1.6):
            try:
                await self._pool.execute(Q["mark_sent"], attempt_id, self._clock.now())
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await asyncio.sleep(delay)
                continue
            self.stats.sent += 1
            self._watch.changed()
            log.info("mailer.sent", attempt_id=attempt_id)
            return
        log.error("mailer.sent_unrecorded", attempt_id=attempt_id)

    async def _failed(self, attempt_id: str, tries: int, exc: BaseException) -> None:
        error = describe_error(exc)
        cfg = self.config
        if tries >= cfg.max_tries:
            await self._pool.execute(Q["mark_failed"], attempt_id, tries, error)
            self.stats.failed += 1
            log.warning("mailer.failed", attempt_id=attempt_id, tries=tries, error=error)
            return
        ceiling = min(cfg.backoff_max, cfg.backoff_initial * 2 ** (tries - 1))
        delay = _jitter.uniform(ceiling / 2, ceiling)  # equal jitter: spreads retries out
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

"""The claim-mail outbox and the mailer against real Postgres and a real SMTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

import asyncpg
import pytest
from cryptography.exceptions import InvalidTag
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.types import ASGIApp, Receive, Scope, Send

import workers.mailer as mailer_module
from service.crypto.pii import Sealer
from service.crypto.tokens import new_attempt_id, new_attempt_token, new_registration_id
from service.dev.mailbox import DevSmtpCatcher, dev_mailbox_router
from service.mail.outbox import claim_mail_write, open_link_token, seal_link_token
from service.settings import ConfigError, Settings
from service.signin.email_link import SentLink, send_link
from tests.support.smtp_sink import Received, SmtpSink, free_port
from tests.support.waiting import wait_until
from workers.mail_templates import (
    ClaimMail,
    SignInMail,
    render_html,
    render_sign_in_html,
    render_sign_in_text,
    render_text,
)
from workers.mailer import Mailer, MailerConfig, MailerStats, describe_error, mailer_worker
from workers.smtp_url import smtp_options

SECRET = "m" * 48
WAIT = 10.0  # seconds a test waits for the mailer to reach a state before failing
PUBLIC_URL = "https://auth.example.org"
EMAIL = "Ana.Lopez+claims@Example.NET"


class Attempt:
    def __init__(self, email: str = EMAIL) -> None:
        self.registration_id = new_registration_id()
        self.attempt_id = new_attempt_id()
        self.token = new_attempt_token()
        self.email = email

    @property
    def link(self) -> str:
        return f"{PUBLIC_URL}/agent/auth/claim/view?token={self.token}"

    @property
    def message_id(self) -> str:
        return f"<{self.attempt_id}@authledger>"


def config(smtp_url: str, **changes: Any) -> MailerConfig:
    fast = MailerConfig(
        smtp_url=smtp_url,
        public_url=PUBLIC_URL,
        backoff_initial=0.05,
        backoff_max=0.2,
        lease=5.0,
        send_timeout=2.0,
        idle_timeout=30.0,  # long: every wake-up in these tests comes from NOTIFY or a retry
        restart_max=0.5,
    )
    return replace(fast, **changes)


class Abort(Exception):
    pass


async def enqueue(
    pool: asyncpg.Pool, attempt: Attempt, *, expires_in: float = 600, abort: bool = False
) -> None:
    """As the append would: in a transaction (rolled back by raising Abort when asked)."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        sql, args = claim_mail_write(
            secret_key=SECRET,
            tenant_id="default",
            registration_id=attempt.registration_id,
            attempt_id=attempt.attempt_id,
            recipient_sealed=await Sealer(SECRET).seal(conn, attempt.attempt_id, attempt.email),
            link_token=attempt.token,
            link_expires_at=now + timedelta(seconds=expires_in),
            now=now,
        )
        await conn.execute(sql, *args)
        if abort:
            raise Abort


@asynccontextmanager
async def running(*mailers: Mailer) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(m.run()) for m in mailers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def a_mailer(pool: asyncpg.Pool, smtp_url: str, **changes: Any) -> Mailer:
    return Mailer(pool, config(smtp_url, **changes), secret_key=SECRET, sealer=Sealer(SECRET))


async def row(pool: asyncpg.Pool, attempt: Attempt) -> asyncpg.Record:
    found = await pool.fetchrow(
        "SELECT * FROM mail_outbox WHERE attempt_id = $1", attempt.attempt_id
    )
    assert found is not None
    return found


async def reached(mailer: Mailer, predicate: Callable[[MailerStats], bool]) -> None:
    """Until the mailer's stats satisfy `predicate` (each send, retry, give-up or expiry is
    counted after its row is written), for at most WAIT seconds."""
    await asyncio.wait_for(mailer.wait_for(predicate), WAIT)


async def database_text(pool: asyncpg.Pool) -> str:
    """Every row of every public table, as Postgres renders it in text (bytea as hex)."""
    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    parts = []
    for table in tables:
        text = await pool.fetchval(f'SELECT string_agg(t::text, chr(10)) FROM "{table[0]}" t')
        parts.append(text or "")
    return "\n".join(parts).lower()


def assert_no_plain_secrets(text: str, attempt: Attempt) -> None:
    for secret in (attempt.email, attempt.token, attempt.token.removeprefix("cvt_")):
        assert secret.lower() not in text
        assert secret.encode().hex() not in text


async def test_enqueued_mail_is_delivered_once_with_the_link(pool: asyncpg.Pool) -> None:
    """One enqueue, woken by NOTIFY: one mail to the address, with the link and Message-ID."""
    attempt = Attempt()
    async with SmtpSink() as sink, running(mailer := a_mailer(pool, sink.url)):
        await reached(mailer, lambda s: s.sleeping)  # idle, sleeping for up to 30 s
        started = time.monotonic()
        await enqueue(pool, attempt)
        sink.patience = 3.0
        [mail] = await sink.wait_for(1)
        assert time.monotonic() - started < 2
        await reached(mailer, lambda s: s.sent == 1)
        done = await row(pool, attempt)
        await asyncio.sleep(0.2)  # time for a second mail, were there one
    assert len(sink.received) == 1
    assert mail.rcpt_tos == (EMAIL,)
    assert mail.message["To"] == EMAIL
    assert mail.message_id == attempt.message_id
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert mail.mail_from == "no-reply@localhost"
    for part in (mail.part("plain"), mail.part("html")):
        assert attempt.link in part
        assert attempt.registration_id in part
        assert "not linked" in part
    assert (done["status"], done["tries"]) == ("sent", 1)
    assert (done["link_token_sealed"], done["last_error"]) == (b"", None)
    assert (done["sent_at"] is not None, done["lease_until"]) == (True, None)


async def test_database_and_logs_never_hold_the_token_or_address(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, during (while the server holds the mail) and after the send: no plain secret."""
    records: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def __getattr__(self, _level: str) -> Callable[..., None]:
            return lambda event, **kw: records.append((event, kw))

    monkeypatch.setattr(mailer_module, "log", Recorder())
    attempt = Attempt()
    during: list[str] = []

    async def snapshot(_: Received) -> None:
        during.append(await database_text(pool))

    await enqueue(pool, attempt)
    assert_no_plain_secrets(await database_text(pool), attempt)
    sealed = (await row(pool, attempt))["link_token_sealed"]
    assert open_link_token(SECRET, attempt.attempt_id, sealed) == attempt.token
    async with SmtpSink(on_message=snapshot) as sink, running(mailer := a_mailer(pool, sink.url)):
        await sink.wait_for(1)
        await reached(mailer, lambda s: s.sent == 1)
    assert (await row(pool, attempt))["status"] == "sent"
    assert len(during) == 1
    assert_no_plain_secrets(during[0], attempt)
    assert_no_plain_secrets(await database_text(pool), attempt)
    assert ("mailer.sent", {"attempt_id": attempt.attempt_id}) in records
    logged = repr(records).lower()
    assert attempt.email.lower() not in logged
    assert attempt.token.lower() not in logged


async def test_two_mailers_send_each_attempt_once(pool: asyncpg.Pool, database_url: str) -> None:
    """Two mailers (two pools, as two processes) on 30 due rows: each Message-ID arrives once."""
    attempts = [Attempt(f"user{i}@example.net") for i in range(30)]
    for attempt in attempts:
        await enqueue(pool, attempt)
    other_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    try:
        async with SmtpSink() as sink:
            first = a_mailer(pool, sink.url, batch=3)
            second = a_mailer(other_pool, sink.url, batch=3)
            async with running(first, second):
                await sink.wait_for(len(attempts))
                await asyncio.sleep(0.3)  # time for a duplicate, were there one
    finally:
        await other_pool.close()
    counts = sink.per_message_id()
    assert set(counts) == {a.message_id for a in attempts}
    assert set(counts.values()) == {1}
    assert first.sent + second.sent == len(attempts)
    statuses = await pool.fetch("SELECT status, tries FROM mail_outbox")
    assert {(r["status"], r["tries"]) for r in statuses} == {("sent", 1)}


async def test_server_down_then_up_delivers_once_after_retries(pool: asyncpg.Pool) -> None:
    """While nothing listens the mailer backs off and retries; once the server is up: one mail."""
    attempt, sink = Attempt(), SmtpSink(port=free_port())
    await enqueue(pool, attempt)
    async with running(mailer := a_mailer(pool, sink.url, max_tries=50)):
        await reached(mailer, lambda s: s.retried >= 2)
        failing = await row(pool, attempt)
        assert (failing["status"], failing["tries"] >= 2, bool(failing["last_error"])) == (
            "pending", True, True)  # fmt: skip
        async with sink:
            await sink.wait_for(1)
            await reached(mailer, lambda s: s.sent == 1)
            done = await row(pool, attempt)
            await asyncio.sleep(0.3)  # time for a second mail, were there one
    assert sink.per_message_id() == {attempt.message_id: 1}
    assert (done["status"], done["tries"] >= 3) == ("sent", True)


async def test_a_burst_of_mail_shares_a_few_kept_connections(pool: asyncpg.Pool) -> None:
    """40 mails in three rounds over 4 lanes: at most 4 SMTP connections, kept from round to
    round, and each mail once (a connection a mail cost a handshake each, issue 11)."""
    attempts = [Attempt(f"person{i}@example.net") for i in range(40)]
    async with SmtpSink() as sink:
        for attempt in attempts:
            await enqueue(pool, attempt)
        async with running(mailer := a_mailer(pool, sink.url, connections=4)):
            await reached(mailer, lambda s: s.sent == 40)
            assert mailer.stats.rounds >= 3  # batch 16: the lanes outlived their round
    assert sink.per_message_id() == {a.message_id: 1 for a in attempts}
    assert 1 <= sink.connections <= 4


async def test_a_kept_connection_the_server_closed_costs_no_retry(pool: asyncpg.Pool) -> None:
    """The relay hangs up an idle kept connection: the next mail goes over a fresh one at
    once, not after a failed try and a back-off."""
    first, second = Attempt(), Attempt("bea@example.net")
    async with SmtpSink() as sink, running(mailer := a_mailer(pool, sink.url)):
        await enqueue(pool, first)
        await reached(mailer, lambda s: s.sent == 1)
        assert sink.hang_up() == 1  # the lane the mailer kept
        await enqueue(pool, second)
        await reached(mailer, lambda s: s.sent == 2)
        assert (mailer.stats.retried, mailer.stats.failed) == (0, 0)
    assert sink.per_message_id() == {first.message_id: 1, second.message_id: 1}
    assert sink.connections == 2


async def test_an_idle_connection_is_closed(pool: asyncpg.Pool) -> None:
    """After keep_alive seconds without mail the mailer quits its connections."""
    async with SmtpSink() as sink, running(mailer := a_mailer(pool, sink.url, keep_alive=1.0)):
        await enqueue(pool, Attempt())
        await reached(mailer, lambda s: s.sent == 1)
        assert len(sink.open_connections()) == 1
        await wait_until(lambda: not sink.open_connections(), within=WAIT, what="closed")
        assert (mailer.stats.retried, mailer.stats.failed) == (0, 0)


async def test_a_stop_that_lands_with_a_notify_still_stops(pool: asyncpg.Pool) -> None:
    """An idle mailer woken (a NOTIFY's callback) in the same loop turn as its cancel stops:
    asyncio.wait_for on Python 3.11 returned normally then, and the cancel was lost."""
    mailer = a_mailer(pool, "smtp://127.0.0.1:1", idle_timeout=1.0)
    task = asyncio.create_task(mailer.run())
    await reached(mailer, lambda s: s.sleeping)  # started, looked, now waiting
    mailer._wake.notified()  # what asyncpg calls on a NOTIFY
    task.cancel()
    async with asyncio.timeout(3):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


async def test_expired_link_is_never_sent(pool: asyncpg.Pool) -> None:
    """A row whose link window is over, or ends during retries, becomes `expired`, unsent."""
    stale, doomed, fresh = Attempt(), Attempt(), Attempt()
    await enqueue(pool, stale, expires_in=-1)
    await enqueue(pool, doomed, expires_in=0.6)
    sink = SmtpSink(port=free_port())
    async with running(mailer := a_mailer(pool, sink.url, max_tries=50)):
        await reached(mailer, lambda s: s.expired == 2)
        async with sink:
            await enqueue(pool, fresh)
            await sink.wait_for(1)
            await asyncio.sleep(0.2)  # time for an expired mail to go out, were it wrong
    assert sink.per_message_id() == {fresh.message_id: 1}
    for attempt in (stale, doomed):
        done = await row(pool, attempt)
        assert (done["status"], done["link_token_sealed"]) == ("expired", b"")
        assert done["sent_at"] is None
    assert (await row(pool, doomed))["tries"] >= 1


async def test_permanent_failure_ends_failed_after_max_tries(pool: asyncpg.Pool) -> None:
    """A server that always refuses: `failed` after exactly max_tries, error kept without PII."""
    attempt = Attempt()
    refusal = f"550 5.1.1 <{attempt.email}> no such user"
    async with SmtpSink(refuse=refusal) as sink:
        mailer = a_mailer(pool, sink.url, max_tries=3)
        async with running(mailer):
            await enqueue(pool, attempt)
            await reached(mailer, lambda s: s.failed == 1)
            done = await row(pool, attempt)
            await asyncio.sleep(0.3)  # time for a fourth try, were there one
    assert (done["status"], done["tries"], sink.refused, sink.received) == ("failed", 3, 3, [])
    assert done["link_token_sealed"] == b""
    assert "550" in done["last_error"]
    assert attempt.email.lower() not in done["last_error"].lower()


async def test_enqueue_lives_and_dies_with_its_transaction(pool: asyncpg.Pool) -> None:
    """A rolled-back append leaves no row; enqueuing the same attempt twice keeps one."""
    attempt, kept = Attempt(), Attempt()
    with pytest.raises(Abort):
        await enqueue(pool, attempt, abort=True)
    await enqueue(pool, kept)
    await enqueue(pool, kept)
    ids = [r["attempt_id"] for r in await pool.fetch("SELECT attempt_id FROM mail_outbox")]
    assert ids == [kept.attempt_id]


async def test_dev_catcher_collects_mail_and_the_mailbox_shows_it(pool: asyncpg.Pool) -> None:
    """The loopback-only catcher receives the mail; /dev/mailbox lists it and shows its HTML."""
    with pytest.raises(ValueError, match="loopback"):
        DevSmtpCatcher(host="0.0.0.0")  # noqa: S104 - the point of the test
    catcher = DevSmtpCatcher()
    await catcher.start()
    try:
        assert catcher.url == f"smtp://127.0.0.1:{catcher.port}?tls=none"
        attempt = Attempt()
        async with running(mailer := a_mailer(pool, catcher.url)):
            await enqueue(pool, attempt)
            await reached(mailer, lambda s: s.sent == 1)
        assert (await row(pool, attempt))["status"] == "sent"
    finally:
        await catcher.stop()

    def from_loopback(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            await app({**scope, "client": ("127.0.0.1", 50000)}, receive, send)  # type: ignore[arg-type]

        return middleware

    router = dev_mailbox_router(catcher.mailbox)
    local = Litestar(route_handlers=[router], middleware=[from_loopback])
    async with AsyncTestClient(app=local) as client:
        listing = await client.get("/dev/mailbox")
        assert listing.status_code == 200
        assert listing.headers["cache-control"] == "no-store"
        [entry] = listing.json()
        assert entry["to"] == [EMAIL]
        assert entry["message_id"] == attempt.message_id
        assert attempt.link in entry["text"]
        page = await client.get(entry["url"])
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "sandbox" in page.headers["content-security-policy"]
        assert f'href="{escape(attempt.link, quote=True)}"' in page.text
        assert (await client.get("/dev/mailbox/999")).status_code == 404
    async with AsyncTestClient(app=Litestar(route_handlers=[router])) as remote:
        assert (await remote.get("/dev/mailbox")).status_code == 404  # not a loopback client


async def sign_in_link(pool: asyncpg.Pool, email: str = EMAIL) -> SentLink:
    """A sign-in link queued as POST /login queues it (service/signin/email_link.py)."""
    return await send_link(
        pool, Sealer(SECRET), secret_key=SECRET, tenant_id="default", email=email,
        return_to="/claim?claim_attempt_token=cvt_x", now=datetime.now(UTC),
        ttl=timedelta(minutes=10),
    )  # fmt: skip


async def test_sign_in_mail_is_sent_by_its_kind(pool: asyncpg.Pool) -> None:
    """A row of kind `sign_in`: the sign-in mail, its link to /login/email with the `lgt_`
    token, Message-ID `<sgn_…@authledger>`; no plain token or address in the database, before
    or after; the dev mailbox shows it like any mail."""
    sent = await sign_in_link(pool)
    queued = await pool.fetchrow("SELECT * FROM mail_outbox WHERE attempt_id = $1", sent.link_id)
    assert queued is not None
    assert (queued["kind"], queued["registration_id"]) == ("sign_in", None)
    catcher = DevSmtpCatcher()
    await catcher.start()
    try:
        async with running(mailer := a_mailer(pool, catcher.url)):
            await reached(mailer, lambda s: s.sent == 1)
    finally:
        await catcher.stop()
    [caught] = catcher.mailbox.messages()
    assert caught.rcpt_tos == (EMAIL,)
    assert (caught.subject, caught.message_id) == (
        "Your sign-in link",
        f"<{sent.link_id}@authledger>",
    )
    [link] = [w for w in caught.text.split() if w.startswith(PUBLIC_URL + "/login/email?token=")]
    token = link.rsplit("=", 1)[1]
    assert token.startswith("lgt_")
    assert len(token) == 36
    assert f'href="{escape(link, quote=True)}"' in (caught.html or "")
    text = await database_text(pool)
    for secret in (EMAIL.lower(), token.lower(), token.encode().hex()):
        assert secret not in text
    assert (await pool.fetchval("SELECT status FROM mail_outbox WHERE attempt_id = $1",
                                sent.link_id)) == "sent"  # fmt: skip

    router = dev_mailbox_router(catcher.mailbox, loopback_only=False)
    async with AsyncTestClient(app=Litestar(route_handlers=[router])) as client:
        [entry] = (await client.get("/dev/mailbox")).json()
        assert (entry["message_id"], entry["subject"]) == (caught.message_id, "Your sign-in link")
        assert link in entry["text"]


def test_sign_in_template_and_errors_keep_the_token_out() -> None:
    """The sign-in mail escapes every value and names its expiry; error texts blank out a
    sign-in token as they do a claim token."""
    mail = SignInMail(
        link_id="sgn_x",
        recipient='"><script>@example.net',
        link="https://auth.example.org/login/email?token=lgt_a&b",
        link_expires_at=datetime(2026, 7, 1, 9, 30, tzinfo=UTC),
        service_name="Acme & Co",
    )
    page = render_sign_in_html(mail)
    assert "<script>" not in page
    assert "Acme &amp; Co" in page
    assert 'href="https://auth.example.org/login/email?token=lgt_a&amp;b"' in page
    text = render_sign_in_text(mail)
    assert mail.link in text
    assert "2026-07-01 09:30 UTC" in text
    assert mail.recipient not in repr(mail)
    assert "lgt_" not in repr(mail)
    error = describe_error(ValueError("cannot send lgt_Secret-Token_1 to cvt_other"))
    assert "lgt_" not in error
    assert "cvt_" not in error
    assert error.count("<redacted>") == 2


def test_smtp_urls_give_the_right_transport() -> None:
    """smtp:// requires STARTTLS, smtps:// is implicit TLS, ?tls=none is plain and takes no
    password; certificates are verified; anything else is refused."""
    plain = smtp_options("smtp://mail.example.org")
    assert (plain["port"], plain["use_tls"], plain["start_tls"]) == (25, False, True)
    assert plain["validate_certs"] is True
    secure = smtp_options("smtps://us%40r:p%3Ass@mail.example.org")
    assert (secure["port"], secure["use_tls"], secure["start_tls"]) == (465, True, False)
    assert (secure["username"], secure["password"]) == ("us@r", "p:ss")
    relay = smtp_options("smtp://user:pw@relay.example.org:587?tls=starttls")
    assert (relay["port"], relay["start_tls"]) == (587, True)
    sink = smtp_options("smtp://127.0.0.1:2525?tls=none")
    assert (sink["use_tls"], sink["start_tls"]) == (False, False)
    for bad in (
        "http://mail.example.org",
        "smtp://user:pw@127.0.0.1:2525?tls=none",  # a password in clear text
        "smtps://mail.example.org?tls=none",
        "smtp://mail.example.org?tls=maybe",
        "smtp://mail.example.org?tls=none&tls=starttls",
        "smtp://mail.example.org?verify=no",
    ):
        with pytest.raises(ValueError, match=r"smtp|tls"):
            smtp_options(bad)


def test_templates_escape_every_value() -> None:
    """The HTML part escapes every value; the text part states the link and its expiry."""
    mail = ClaimMail(
        attempt_id="cla_x",
        registration_id="reg_<b>",
        recipient='"><script>@example.net',
        link="https://auth.example.org/agent/auth/claim/view?token=cvt_a&b",
        link_expires_at=datetime(2026, 7, 1, 9, 30, tzinfo=UTC),
        service_name="Acme & Co",
    )
    page = render_html(mail)
    assert "<script>" not in page
    assert "reg_&lt;b&gt;" in page
    assert "Acme &amp; Co" in page
    assert 'href="https://auth.example.org/agent/auth/claim/view?token=cvt_a&amp;b"' in page
    assert "<img" not in page
    text = render_text(mail)
    assert mail.link in text
    assert "2026-07-01 09:30 UTC" in text
    assert mail.recipient not in repr(mail)


def test_link_token_is_bound_to_its_attempt() -> None:
    """The sealed link token opens only under its own attempt id and secret."""
    sealed = seal_link_token(SECRET, "cla_one", "cvt_secret")
    assert open_link_token(SECRET, "cla_one", sealed) == "cvt_secret"
    for attempt_id, secret in (("cla_two", SECRET), ("cla_one", "n" * 48)):
        with pytest.raises(InvalidTag):
            open_link_token(secret, attempt_id, sealed)


async def test_mailer_worker_names_a_missing_variable(pool: asyncpg.Pool) -> None:
    """Without an SMTP URL or a secret key the mailer refuses to start, naming the variable."""
    bare = Settings(database_url="postgresql://x/y", nats_url="nats://x")
    with pytest.raises(ConfigError, match="AUTHLEDGER_SMTP_URL"):
        _ = mailer_worker(bare, pool)
    with pytest.raises(ConfigError, match="AUTHLEDGER_SECRET_KEY"):
        _ = mailer_worker(replace(bare, smtp_url="smtp://127.0.0.1:2525"), pool)
    with pytest.raises(ConfigError, match="AUTHLEDGER_SMTP_URL: tls=none"):
        _ = mailer_worker(
            replace(bare, smtp_url="smtp://u:p@h:25?tls=none", secret_key=SECRET), pool
        )
    worker = mailer_worker(replace(bare, smtp_url="smtp://127.0.0.1:2525", secret_key=SECRET), pool)
    worker.close()  # built, never started

"""Security issue 12, finding 9: SMTP requires STARTTLS unless the URL says otherwise explicitly.

A server (or anyone on the path) that does not offer STARTTLS must get no claim mail and no
SMTP password; the row stays queued and is retried. A certificate the machine does not trust
is refused. Only `?tls=none`, written in the URL, lets mail go to a plain local sink.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.crypto.pii import Sealer
from service.crypto.tokens import new_attempt_id, new_attempt_token, new_registration_id
from service.mail.outbox import claim_mail_write
from tests.support.smtp_sink import SmtpSink
from tests.support.waiting import wait_until
from workers.mailer import Mailer, MailerConfig

SECRET = "d" * 48
EMAIL = "ana@example.net"
USER, PASSWORD = "relay-user", "s3cret-relay-pw"


async def queue_one(pool: asyncpg.Pool) -> str:
    """One claim mail in the outbox, as the append queues it; its attempt id."""
    attempt_id, now = new_attempt_id(), datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        sql, args = claim_mail_write(
            secret_key=SECRET,
            tenant_id="default",
            registration_id=new_registration_id(),
            attempt_id=attempt_id,
            recipient_sealed=await Sealer(SECRET).seal(conn, attempt_id, EMAIL),
            link_token=new_attempt_token(),
            link_expires_at=now + timedelta(minutes=10),
            now=now,
        )
        await conn.execute(sql, *args)
    return attempt_id


@asynccontextmanager
async def mailing(pool: asyncpg.Pool, smtp_url: str) -> AsyncIterator[Mailer]:
    config = MailerConfig(
        smtp_url=smtp_url,
        public_url="https://auth.example.org",
        backoff_initial=0.05,
        backoff_max=0.1,
        lease=5.0,
        send_timeout=2.0,
    )
    mailer = Mailer(pool, config, secret_key=SECRET, sealer=Sealer(SECRET))
    task = asyncio.create_task(mailer.run())
    try:
        yield mailer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def tried(pool: asyncpg.Pool, attempt_id: str, times: int) -> asyncpg.Record:
    """The outbox row once the mailer has tried it `times` times, or settled it (10 s at most)."""

    async def done() -> asyncpg.Record | None:
        row = await pool.fetchrow("SELECT * FROM mail_outbox WHERE attempt_id = $1", attempt_id)
        assert row is not None
        settled = row["status"] != "pending"
        return row if (settled or row["tries"] >= times) and row["lease_until"] is None else None

    return await wait_until(done, within=10, what=f"the mailer trying {attempt_id} {times}x")


def self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 with a self-signed certificate, and that cert's file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sink.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "sink.pem", directory / "sink.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


@pytest.mark.parametrize("login", ["", f"{USER}:{PASSWORD}@"], ids=["no-login", "login"])
async def test_a_server_without_starttls_gets_no_mail_and_no_password(
    pool: asyncpg.Pool, login: str
) -> None:
    """The default smtp:// URL (with or without a login) against a sink that offers AUTH but
    no STARTTLS: nothing is sent, no AUTH is tried, the password never crosses the wire, the
    row waits for a retry."""
    async with SmtpSink(offer_auth=True) as sink:
        attempt_id = await queue_one(pool)
        url = f"smtp://{login}{sink.host}:{sink.port}"
        async with mailing(pool, url) as mailer:
            row = await tried(pool, attempt_id, 2)
        assert (sink.received, sink.auth_tries, mailer.sent) == ([], [], 0)
        heard = bytes(sink.heard)
        assert b"EHLO" in heard  # the mailer did talk to it
        assert b"MAIL FROM" not in heard
        assert b"AUTH" not in heard
        assert PASSWORD.encode() not in heard
        plain_auth = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
        assert plain_auth not in heard
        assert base64.b64encode(PASSWORD.encode()) not in heard
    assert row["status"] == "pending"  # retried, not lost
    assert row["next_try_at"] is not None
    assert "STARTTLS" in row["last_error"]
    assert row["link_token_sealed"] != b""  # the link is kept for the next try


async def test_the_explicit_opt_out_delivers_to_a_plain_sink(pool: asyncpg.Pool) -> None:
    """The same plain sink with `?tls=none` in the URL gets the mail."""
    async with SmtpSink() as sink:
        assert sink.url.endswith("?tls=none")
        attempt_id = await queue_one(pool)
        async with mailing(pool, sink.url):
            [mail] = await sink.wait_for(1)
    assert mail.rcpt_tos == (EMAIL,)
    assert mail.message_id == f"<{attempt_id}@authledger>"
    done = await pool.fetchval("SELECT status FROM mail_outbox WHERE attempt_id = $1", attempt_id)
    assert done == "sent"


async def test_an_untrusted_certificate_is_refused(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sink offering STARTTLS with a certificate nobody vouches for gets nothing; once the
    machine trusts that certificate (SSL_CERT_FILE), the mail goes over TLS."""
    context, cert_file = self_signed(tmp_path)
    async with SmtpSink(tls_context=context) as sink:
        attempt_id = await queue_one(pool)
        async with mailing(pool, sink.default_url):
            row = await tried(pool, attempt_id, 1)
        assert sink.received == []
        assert row["status"] == "pending"
        assert b"STARTTLS" in bytes(sink.heard)
        assert b"MAIL FROM" not in bytes(sink.heard)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        async with mailing(pool, sink.default_url):
            [mail] = await sink.wait_for(1)
    assert mail.message_id == f"<{attempt_id}@authledger>"

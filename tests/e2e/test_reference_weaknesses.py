"""Regression tests for reference weaknesses (spec §10) not already named elsewhere:
W13 (no demo mailbox outside `dev`) and W15 (mail is not sent in the request)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from tests.support.app_client import Service, link_of, running_service
from tests.support.backends import Backend
from tests.support.waiting import wait_until

EMAIL = "frank.person@example.net"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as service:
        yield service


async def test_no_mailbox_outside_dev(svc: Service) -> None:
    """W13: the served app has no mailbox route for anyone, registration id or not."""
    registered = await svc.anonymous()
    for path in ("/dev/mailbox", "/dev/mailbox/1", f"/mail/{registered['registration_id']}.html"):
        answer = await svc.client.get(path)
        assert answer.status_code == 404, path


async def test_registration_succeeds_while_smtp_is_down_and_mail_follows(svc: Service) -> None:
    """W15: with the SMTP server down, E4 still answers 200 and records the attempt; the mail
    is retried from the outbox and delivered once the server is back."""
    await svc.sink.stop()
    registered = await svc.verified_email(EMAIL)
    assert registered["registration_type"] == "email-verification"
    assert await svc.count("claim.attempt_started") == 1
    pool = svc.resources.pool

    async def tried_once() -> asyncpg.Record | None:
        row = await pool.fetchrow("SELECT status, tries FROM mail_outbox")
        return row if row is not None and row["tries"] >= 1 else None

    row = await wait_until(tried_once, what="the mailer's first try", every=0.05)
    assert (row["status"], row["tries"] >= 1) == ("pending", True)
    await svc.sink.start()
    svc.clock.advance(timedelta(minutes=2))  # past the first back-off, inside the link window
    mail = await svc.mail(1)
    assert mail.rcpt_tos == (EMAIL,)
    page = await svc.client.get(link_of(mail))
    assert page.status_code == 200

    async def marked_sent() -> bool | None:  # the mailer marks the row once SMTP said yes
        return await pool.fetchval("SELECT status FROM mail_outbox") == "sent" or None

    assert await wait_until(marked_sent, what="the outbox row marked sent", every=0.05)

"""Claim mail: queued in the outbox (service/mail/outbox.py) inside the append transaction,
sent by workers/mailer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from service.commands.context import Context, InTransaction
from service.mail.outbox import enqueue_claim_mail


@dataclass(frozen=True, slots=True)
class MailRequest:
    registration_id: str
    attempt_id: str
    recipient_sealed: str  # under the attempt's own key, like its event's address
    link_token: str
    link_expires_at: datetime


def enqueue_mail(ctx: Context, mail: MailRequest, now: datetime) -> InTransaction:
    """The outbox row exists exactly when the attempt's event does."""

    async def enqueue(conn: asyncpg.Connection) -> None:
        await enqueue_claim_mail(
            conn,
            secret_key=ctx.secret_key,
            tenant_id=ctx.tenant.tenant_id,
            registration_id=mail.registration_id,
            attempt_id=mail.attempt_id,
            recipient_sealed=mail.recipient_sealed,
            link_token=mail.link_token,
            link_expires_at=mail.link_expires_at,
            now=now,
        )

    return enqueue

"""Claim mail: queued in the outbox (service/mail/outbox.py) by one of the append's writes,
so the row exists exactly when the attempt's event does; sent by workers/mailer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from events.appends import Write
from service.commands.context import Context
from service.mail.outbox import claim_mail_write


@dataclass(frozen=True, slots=True)
class MailRequest:
    registration_id: str
    attempt_id: str
    recipient_sealed: str  # under the attempt's own key, like its event's address
    link_token: str
    link_expires_at: datetime


def mail_write(ctx: Context, mail: MailRequest, now: datetime) -> Write:
    """The outbox row of `mail`, for `Context.record(writes=...)`."""
    return claim_mail_write(
        secret_key=ctx.secret_key,
        tenant_id=ctx.tenant.tenant_id,
        registration_id=mail.registration_id,
        attempt_id=mail.attempt_id,
        recipient_sealed=mail.recipient_sealed,
        link_token=mail.link_token,
        link_expires_at=mail.link_expires_at,
        now=now,
    )

"""The mail outbox's writer: a claim e-mail queued in `mail_outbox`, in the transaction that
appends `claim.attempt_started`, so the row exists exactly when the event does (spec §10 W15);
and, of kind `sign_in`, a v0.6 sign-in link's mail, in the transaction that stores the link
(service/signin/email_link.py).

The row holds the recipient sealed (service/pii) and the link token (`cvt_…`, `lgt_…`) under
AES-GCM (aad = the row's attempt id); the mailer (workers/mailer.py) opens both in memory just
before the send. The queue's NOTIFY channel is `CHANNEL`, delivered when the transaction commits.
"""

from __future__ import annotations

import os
from datetime import datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.appends import Write
from events.rows import ColumnForm, column_form
from events.sql import load_queries
from service.crypto.pii import Db
from service.crypto.tokens import derive_key

MAIL_OUTBOX_KEY = b"authledger mail outbox v1"  # derive_key purpose of the link-token key
CHANNEL = "authledger_mail"
NONCE_BYTES = 12
Q = load_queries("service.mail", "outbox.sql")
column_form(Q["enqueue"], ColumnForm(Q["enqueue_rows"]))


def seal_link_token(secret_key: str | bytes, attempt_id: str, token: str) -> bytes:
    """nonce || AES-GCM of the token under the outbox key, bound to its attempt id."""
    nonce = os.urandom(NONCE_BYTES)
    aead = AESGCM(derive_key(secret_key, MAIL_OUTBOX_KEY))
    return nonce + aead.encrypt(nonce, token.encode(), attempt_id.encode())


def open_link_token(secret_key: str | bytes, attempt_id: str, sealed: bytes) -> str:
    """The plain link token; InvalidTag when it was moved, altered or sealed under another key."""
    aead = AESGCM(derive_key(secret_key, MAIL_OUTBOX_KEY))
    return aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], attempt_id.encode()).decode()


def claim_mail_write(
    *,
    secret_key: str | bytes,
    tenant_id: str,
    registration_id: str,
    attempt_id: str,
    recipient_sealed: str,
    link_token: str,
    link_expires_at: datetime,
    now: datetime,
) -> Write:
    """The statement that queues the claim e-mail of a new attempt, for the append's writes
    (events.appends.Write): a batch's rows go in one execution (its column form,
    `enqueue_rows`), before the append lock, and its NOTIFY reaches the mailer when the batch
    commits.

    The caller seals the address (service.crypto.pii) under the subject of the event's
    `email_sealed`, the attempt's own, so one erase covers both and the seal costs no round
    trip here.
    """
    if now.tzinfo is None or link_expires_at.tzinfo is None:
        raise ValueError("a claim mail needs timezone-aware times")
    token = seal_link_token(secret_key, attempt_id, link_token)
    args = (attempt_id, tenant_id, registration_id, recipient_sealed, token, link_expires_at, now)
    return Q["enqueue"], args


async def enqueue_sign_in_mail(
    conn: Db,
    *,
    secret_key: str | bytes,
    tenant_id: str,
    link_id: str,
    recipient_sealed: str,
    link_token: str,
    link_expires_at: datetime,
    now: datetime,
) -> None:
    """Queue a sign-in link's mail (kind `sign_in`, no registration), inside the transaction
    that stores the link; `recipient_sealed` under the link's own subject key."""
    if now.tzinfo is None or link_expires_at.tzinfo is None:
        raise ValueError("enqueue_sign_in_mail needs timezone-aware times")
    token = seal_link_token(secret_key, link_id, link_token)
    await conn.execute(
        Q["enqueue_sign_in"], link_id, tenant_id, recipient_sealed, token, link_expires_at, now
    )

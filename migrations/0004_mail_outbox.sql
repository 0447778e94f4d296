-- The claim-mail outbox (workers/mailer.py). A row is written in the same transaction as its
-- `claim.attempt_started` event, so it exists exactly when the event does; the mailer sends it
-- later, outside any request (spec §10 W15). Nothing in it is plain: the recipient is sealed
-- like every personal datum (service/crypto/pii.py), the link token is AES-GCM under a key derived
-- from AUTHLEDGER_SECRET_KEY (aad = attempt_id) and is wiped once the row is done with.
-- Not a projection: a rebuild never touches it.
CREATE TABLE mail_outbox (
    attempt_id         text        PRIMARY KEY,
    tenant_id          text        NOT NULL,
    registration_id    text        NOT NULL,
    recipient_sealed   text        NOT NULL,  -- pii1.<subject>.<blob>
    link_token_sealed  bytea       NOT NULL,  -- nonce || AES-GCM(key, cvt_…); empty once done
    link_expires_at    timestamptz NOT NULL,
    created_at         timestamptz NOT NULL,
    status             text        NOT NULL DEFAULT 'pending',
    tries              integer     NOT NULL DEFAULT 0 CHECK (tries >= 0),
    next_try_at        timestamptz NOT NULL,
    lease_until        timestamptz,           -- a mailer is sending it until then
    sent_at            timestamptz,
    last_error         text,                  -- never holds the address or the token
    CONSTRAINT mail_outbox_status_check
        CHECK (status IN ('pending', 'sent', 'failed', 'expired')),
    CONSTRAINT mail_outbox_done_means_wiped
        CHECK (status = 'pending' OR length(link_token_sealed) = 0),
    CONSTRAINT mail_outbox_sent_has_time
        CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);

CREATE INDEX mail_outbox_due_idx ON mail_outbox (status, next_try_at);

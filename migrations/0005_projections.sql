-- Current-state tables folded from the log by projections/ (inline, in the append
-- transaction). Disposable: `authledger replay` rebuilds them from the events alone, so every
-- column comes from an event (timestamps from occurred_at), never from now().

CREATE TABLE registrations (
    registration_id            text        PRIMARY KEY,
    tenant_id                  text        NOT NULL,
    kind                       text        NOT NULL,
    status                     text        NOT NULL,
    requested_credential_type  text        NOT NULL,
    claim_token_hash           text        NOT NULL UNIQUE,
    expires_at                 timestamptz NOT NULL,
    credential_id              text,
    user_id                    text,
    attempt_id                 text,
    attempt_status             text,
    attempt_token_hash         text        UNIQUE,  -- the live attempt's link only
    link_expires_at            timestamptz,
    email_index                text,
    version                    integer     NOT NULL,
    created_at                 timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL
);
CREATE INDEX registrations_open_expiry_idx ON registrations (expires_at)
    WHERE status IN ('unclaimed', 'pending_claim');

CREATE TABLE credentials (
    credential_id    text        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    kind             text        NOT NULL,
    token_hash       text        NOT NULL UNIQUE,
    scopes           text[]      NOT NULL,
    issued_via       text        NOT NULL,
    registration_id  text,
    user_id          text,
    status           text        NOT NULL,  -- active | revoked | expired
    expires_at       timestamptz,
    issued_at        timestamptz NOT NULL,
    ended_at         timestamptz,
    end_reason       text,
    version          integer     NOT NULL
);
CREATE INDEX credentials_registration_idx ON credentials (registration_id);
CREATE INDEX credentials_user_idx ON credentials (user_id);
CREATE INDEX credentials_active_expiry_idx ON credentials (expires_at) WHERE status = 'active';

CREATE TABLE users (
    user_id         text        PRIMARY KEY,
    tenant_id       text        NOT NULL,
    email_index     text        NOT NULL,
    email_sealed    text        NOT NULL,
    email_verified  boolean     NOT NULL,
    created_at      timestamptz NOT NULL,
    CONSTRAINT users_email_key UNIQUE (tenant_id, email_index)
);

-- Agent providers (spec §7, §8): the trust list and delegations as read models, ID-JAG
-- credentials tagged with their provider, users found by phone, and the shared jti store.

CREATE TABLE trusted_issuers (
    issuer                  text        NOT NULL,
    tenant_id               text        NOT NULL,
    stream_id               text        NOT NULL,
    jwks_uri                text,
    algorithms              text[]      NOT NULL,
    display_name            text,
    link_by_verified_email  boolean     NOT NULL,
    client_ids              text[]      NOT NULL,
    required_amr            text[]      NOT NULL,
    trusted                 boolean     NOT NULL,  -- false once removed (the row stays)
    version                 integer     NOT NULL,
    updated_at              timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, issuer)
);

CREATE TABLE delegations (
    delegation_id    text        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    issuer           text        NOT NULL,
    audience         text        NOT NULL,
    user_id          text        NOT NULL,
    matched_by       text        NOT NULL,
    uses             integer     NOT NULL,
    created_at       timestamptz NOT NULL,
    last_used_at     timestamptz NOT NULL,
    revoked_at       timestamptz,
    version          integer     NOT NULL
);
CREATE INDEX delegations_user_idx ON delegations (user_id);
CREATE INDEX delegations_issuer_idx ON delegations (tenant_id, issuer);

ALTER TABLE credentials ADD COLUMN issuer text, ADD COLUMN delegation_id text;
CREATE INDEX credentials_delegation_idx ON credentials (delegation_id) WHERE status = 'active';
CREATE INDEX credentials_issuer_idx ON credentials (tenant_id, issuer) WHERE status = 'active';

ALTER TABLE users
    ALTER COLUMN email_index DROP NOT NULL,
    ALTER COLUMN email_sealed DROP NOT NULL,
    ADD COLUMN phone_index text,
    ADD COLUMN phone_sealed text,
    ADD COLUMN phone_verified boolean NOT NULL DEFAULT false,
    ADD COLUMN name_sealed text,
    ADD COLUMN created_via text;
CREATE UNIQUE INDEX users_phone_key ON users (tenant_id, phone_index) WHERE phone_index IS NOT NULL;

-- Every (iss, jti) of an accepted ID-JAG or logout token, until the token could no longer be
-- accepted anyway (exp + skew). Operational state, not a read model: shared by every replica,
-- written in the transaction of the events the token caused, pruned when expired.
CREATE TABLE seen_jtis (
    tenant_id   text        NOT NULL,
    issuer      text        NOT NULL,
    jti         text        NOT NULL,
    keep_until  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, issuer, jti)
);
CREATE INDEX seen_jtis_keep_until_idx ON seen_jtis (keep_until);

-- The auth.md 0.6.0 dialect beside v1 (issue 14; docs/design/v06-dialect.md, section 4).
--
-- Read models: a registration's dialect (the door its claim token works at) and, for an
-- ID-JAG step-up, the delegation it would link; a delegation's generation (how often it was
-- revoked: what a service-signed assertion for the subject must carry). The defaults are
-- what the projections write for events recorded before this release, so `replay --verify`
-- finds old rows equal.
--
-- Operational state, not read models, with no event behind a row by design: e-mail sign-in
-- links (a person proving an address on the claim page) and the token endpoint's polling
-- pace. Neither decides a claim alone: the claim is an event of its own, which records how
-- the person signed in (`registration.claimed.auth_method`).
ALTER TABLE registrations
    ADD COLUMN dialect text NOT NULL DEFAULT 'v1',   -- every existing row is v1
    ADD COLUMN delegation_id text;                   -- step-up registrations: the subject
CREATE INDEX registrations_delegation_idx ON registrations (tenant_id, delegation_id)
    WHERE delegation_id IS NOT NULL;
CREATE INDEX registrations_user_idx ON registrations (tenant_id, user_id) WHERE user_id IS NOT NULL;

ALTER TABLE delegations ADD COLUMN generation integer NOT NULL DEFAULT 0;  -- = revocations

ALTER TABLE mail_outbox
    ADD COLUMN kind text NOT NULL DEFAULT 'claim' CHECK (kind IN ('claim', 'sign_in')),
    ALTER COLUMN registration_id DROP NOT NULL;      -- attempt_id holds the sgn_ id for sign-ins

-- E-mail sign-in links (operational, not a read model; pruned as they expire).
CREATE TABLE sign_in_links (
    link_id       text        PRIMARY KEY,           -- sgn_…, also the outbox row and PII subject
    tenant_id     text        NOT NULL,
    token_hash    text        NOT NULL UNIQUE,       -- SHA-256 of lgt_…
    email_sealed  text        NOT NULL,              -- under the link's own subject key
    email_index   text        NOT NULL,              -- for erasure
    return_to     text        NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);
CREATE INDEX sign_in_links_expiry_idx ON sign_in_links (expires_at);
CREATE INDEX sign_in_links_email_idx ON sign_in_links (tenant_id, email_index);

-- V7 pacing (O-G): shared by replicas, a cache of timing only; a crash empties it.
CREATE UNLOGGED TABLE claim_polls (
    claim_token_hash  text        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    last_poll_at      timestamptz NOT NULL,
    interval_s        integer     NOT NULL,
    too_fast          boolean     NOT NULL
);
CREATE INDEX claim_polls_last_idx ON claim_polls (last_poll_at);

-- Scoped operator credentials (security issue 12, finding 2): the read model the access
-- checks use, folded from `access.granted` / `access.revoked` (events/access.py) in the
-- append's transaction, and rebuilt from the log like the others. Only the SHA-256 of a
-- credential's token is kept, never the token.
CREATE TABLE access_credentials (
    credential_id  text        PRIMARY KEY,
    tenant_id      text,                    -- the tenant it acts in; NULL: every tenant
    scope          text        NOT NULL,    -- operator | tenant_admin | introspection | metrics | revocation_feed
    client_id      text,                    -- introspection: the resource server (RFC 7662 §2.1)
    label          text        NOT NULL,
    token_hash     text        NOT NULL,
    granted_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoke_reason  text,
    version        integer     NOT NULL
);
CREATE UNIQUE INDEX access_credentials_token_hash_key ON access_credentials (token_hash);

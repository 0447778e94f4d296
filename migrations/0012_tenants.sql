-- Tenants (issue 7): services other than the installation's default one, each reached by its
-- own host names, and each signing its access tokens with keys of its own.

CREATE TABLE tenants (
    tenant_id   text        PRIMARY KEY,
    hosts       text[]      NOT NULL,
    settings    json        NOT NULL,  -- overrides of the installation's settings
    status      text        NOT NULL,  -- active | disabled
    version     integer     NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

ALTER TABLE signing_keys ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
CREATE INDEX signing_keys_tenant_idx ON signing_keys (tenant_id, created_at);
DROP INDEX signing_keys_one_active;
CREATE UNIQUE INDEX signing_keys_one_active_per_tenant
    ON signing_keys (tenant_id) WHERE activated_at IS NOT NULL AND retired_at IS NULL;

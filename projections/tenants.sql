-- name: created
INSERT INTO tenants (tenant_id, hosts, settings, status, version, created_at, updated_at)
VALUES ($1, $2, $3::text::json, 'active', $4, $5, $5)

-- name: configured
UPDATE tenants SET hosts = $2, settings = $3::text::json, version = $4, updated_at = $5
WHERE tenant_id = $1

-- name: status
UPDATE tenants SET status = $2, version = $3, updated_at = $4 WHERE tenant_id = $1

-- name: all
SELECT tenant_id, hosts, settings::text AS settings, status, version FROM tenants
ORDER BY tenant_id

-- name: holding_hosts
SELECT tenant_id, host FROM tenants, unnest(hosts) AS host
WHERE host = ANY($1::text[]) AND tenant_id <> $2

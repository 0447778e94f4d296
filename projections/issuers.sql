-- name: trusted
INSERT INTO trusted_issuers (
    issuer, tenant_id, stream_id, jwks_uri, algorithms, display_name, link_by_verified_email,
    client_ids, required_amr, trusted, version, updated_at
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true, $10, $11)
ON CONFLICT (tenant_id, issuer) DO UPDATE SET
    jwks_uri = EXCLUDED.jwks_uri, algorithms = EXCLUDED.algorithms,
    display_name = EXCLUDED.display_name,
    link_by_verified_email = EXCLUDED.link_by_verified_email,
    client_ids = EXCLUDED.client_ids, required_amr = EXCLUDED.required_amr, trusted = true,
    version = EXCLUDED.version, updated_at = EXCLUDED.updated_at

-- name: removed
UPDATE trusted_issuers SET trusted = false, version = $3, updated_at = $4
WHERE tenant_id = $1 AND issuer = $2

-- name: lookups_with_heads
-- The trust entry of each caller's issuer, if it is trusted now, for many callers at once
-- (service/commands/trust_list.py `lookup`, `lookup_with_head`), and in the same round trip
-- the head of the delegation each one names and its user's data key row (NULL columns when
-- that subject never registered here, or when the caller names none): an ID-JAG's issuer and
-- the delegation its unverified `sub` names, read together; the head and the key are used only
-- once the signature verifies (service/commands/identity.py verify_presented). $1, $2, $3: the
-- callers' tenants, issuers and delegation ids, one element each
-- (service/commands/coalesced.py gathers them); a row comes back, numbered `n` from 1 as they
-- were, for each caller whose issuer is trusted now.
SELECT q.n, i.issuer, i.jwks_uri, i.algorithms, i.display_name, i.link_by_verified_email,
       i.client_ids, i.required_amr,
       d.user_id AS head_user_id, d.version AS head_version, d.generation AS head_generation,
       k.wrapped_key AS head_wrapped_key, k.created_at < now() AS head_key_settled
FROM unnest($1::text[], $2::text[], $3::text[])
         WITH ORDINALITY AS q (tenant_id, issuer, delegation_id, n)
JOIN trusted_issuers i ON i.tenant_id = q.tenant_id AND i.issuer = q.issuer AND i.trusted
LEFT JOIN delegations d ON d.delegation_id = q.delegation_id AND d.tenant_id = q.tenant_id
LEFT JOIN subject_keys k ON k.subject_id = d.user_id

-- name: listed
SELECT issuer, jwks_uri, algorithms, display_name, link_by_verified_email, client_ids,
       required_amr, version, updated_at
FROM trusted_issuers WHERE tenant_id = $1 AND trusted ORDER BY issuer

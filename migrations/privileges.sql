-- What the runtime role may do, table by table (security issue 12, finding 3; docs/security.md,
-- "The database roles").
--
-- `authledger migrate` runs as the owner role: it owns every table, function and trigger.
-- `serve` and `worker` (and the operator commands) connect as a member of
-- `authledger_runtime`, which gets exactly what is granted here. Not an owner, so it can
-- neither ALTER, DROP nor disable a trigger; and no UPDATE, DELETE or TRUNCATE on the log
-- or on the signed checkpoints.
--
-- Applied by `migrate` after the numbered migrations, and by `replay` after it switches the
-- read models, in one transaction: everything is revoked and granted again, so this file
-- alone says what the runtime may do, and running it twice changes nothing.
--
-- The default, for every table (and so for a table a later migration adds without a line
-- here): SELECT and INSERT only, like the log. A table that needs more gets it below, with
-- the code that needs it named; tests/integration/test_database_roles.py fails for a table
-- this file does not name, so each new table is looked at once.

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM authledger_runtime;
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO authledger_runtime;

-- The log and its anchors: read and append, nothing else.
--   events                  SELECT, INSERT   events_append (0014), the writer's long way
--   chain_checkpoints       SELECT, INSERT   service/audit/signing_round.sql
--   chain_checkpoint_keys   SELECT, INSERT   service/audit/signing_round.sql

-- Read models the inline projections write in the append's transaction. UPDATE, never
-- DELETE; the ones that decide logins are also held to their events by guards.sql.
--   registrations, credentials, trusted_issuers, delegations, subscriptions, tenants  (guarded)
--   users  (no version column to check; logins are not decided from it)
GRANT UPDATE ON registrations, credentials, trusted_issuers, delegations, subscriptions,
    tenants, users TO authledger_runtime;

-- Workers' bookmarks in the log (relay, revocation feed): upserted as they advance.
GRANT UPDATE ON checkpoints TO authledger_runtime;

-- Keys outside the log: erasure empties a subject's key (service/crypto/pii.py, an upsert); the
-- signing key ring retires keys (service/crypto/signing.py).
GRANT UPDATE ON subject_keys, signing_keys TO authledger_runtime;

-- The claim-mail outbox: the mailer leases, marks sent/failed and wipes the link token;
-- erasing an earlier claim attempt deletes its row (service/commands/erasure.sql).
GRANT UPDATE, DELETE ON mail_outbox TO authledger_runtime;

-- Scoped operator credentials (0018): revocation sets revoked_at; guarded like credentials.
GRANT UPDATE ON access_credentials TO authledger_runtime;

-- Every claim attempt's address index (0017), for erasure: the registration's projection
-- replaces an attempt's row and erasure deletes the erased attempts' rows
-- (projections/attempt_addresses.sql). Not a table logins are decided from.
GRANT UPDATE, DELETE ON attempt_addresses TO authledger_runtime;

-- The keys kept across a secret rotation (0019): read at start-up; written only by
-- `authledger rotate-secret`, which runs as the owner.
REVOKE INSERT ON retained_keys FROM authledger_runtime;

-- Operational state, pruned or taken over as it runs out.
--   seen_jtis               pruned once expired (service/commands/providers.sql)
--   push_leases             taken, renewed and given back (workers/revocation_push.sql)
--   rate_limit_windows      counted and pruned (rate_limit_take, 0013)
--   registration_snapshots  upserted; erasure deletes (service/commands/registration_state.sql)
GRANT DELETE ON seen_jtis TO authledger_runtime;
GRANT UPDATE, DELETE ON push_leases, rate_limit_windows, registration_snapshots
    TO authledger_runtime;

-- E-mail sign-in links (0020): marked used; pruned; erasure deletes (service/signin/email_link.sql)
GRANT UPDATE, DELETE ON sign_in_links TO authledger_runtime;
-- V7 pacing (0020): upserted per poll, pruned (service/commands/claim_grant.sql)
GRANT UPDATE, DELETE ON claim_polls TO authledger_runtime;

-- Which migrations ran: read only (the runtime never migrates).
REVOKE INSERT ON schema_migrations FROM authledger_runtime;

-- Three indexes stop keeping an entry for every row whose key is NULL (issue 11, the write path).
--
-- Each is only ever searched with a value (`= $n`), never for NULL, yet it held an entry for
-- every row without one: three of the twenty index records an anonymous registration wrote
-- (docs/benchmarks.md, session 19: `pg_waldump --stats`), each a B-tree insert and a WAL record
-- under the append lock, and their pages in the buffer cache.
--
-- - registrations.attempt_token_hash: set while a claim attempt is under way (E5 to E8),
--   NULL for every other registration; found by `by_attempt_token`. Still unique among
--   the values it holds: a unique index, as the constraint was (NULLs never conflicted).
-- - credentials.user_id: NULL until a person claims or the credential is a user's from the
--   start (ID-JAG, verified email); found by tenant and user (`active_of_user`, and the
--   audit's `credentials_of_user`).
-- - credentials_delegation_idx: the active credentials of an ID-JAG delegation; every other
--   active credential had a NULL entry (`active_of_delegation`).
--
-- `x = $n` implies `x IS NOT NULL` to the planner, so every statement that used an index uses
-- the partial one (tests/integration/test_partial_indexes.py). `authledger replay` copies
-- them to its shadow tables with the live table's other indexes.
ALTER TABLE registrations DROP CONSTRAINT registrations_attempt_token_hash_key;
CREATE UNIQUE INDEX registrations_attempt_token_hash_key ON registrations (attempt_token_hash)
WHERE attempt_token_hash IS NOT NULL;

DROP INDEX credentials_user_idx;
CREATE INDEX credentials_user_idx ON credentials (user_id) WHERE user_id IS NOT NULL;

DROP INDEX credentials_delegation_idx;
CREATE INDEX credentials_delegation_idx ON credentials (delegation_id)
WHERE status = 'active' AND delegation_id IS NOT NULL;

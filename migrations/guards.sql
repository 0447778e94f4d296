-- Write guards: a read-model row that logins are decided from exists only with the event
-- behind it (security issue 12, finding 3; docs/security.md, "The database roles").
--
-- The runtime role (privileges.sql) may INSERT and UPDATE these tables, because the inline
-- projections write them in the append's transaction. These triggers make every such write
-- prove itself against the log as its statement ends: the row's `version` names the event
-- that wrote it, and that event must be stored in the row's stream (for credentials: be the
-- very event that makes this change). A row forged without an event, a revoked key set
-- active again, scopes widened, or an expiry pushed back: the statement fails, and the
-- transaction with it (nothing of it stays).
--
-- They check the runtime role only: the owner (or a superuser) could drop them anyway, so
-- its writes (a data migration like 0015, a repair) pass unchecked.
--
-- Why triggers, and why the runtime cannot get round them: they belong to the owner role
-- (this file runs as it), and dropping or disabling a trigger needs the table's owner;
-- `session_replication_role = replica`, which skips triggers, is for superusers only. The
-- functions name `public.events` and run with a fixed search_path, so a temporary table
-- called `events` cannot stand in for the log.
--
-- Once per statement, not once per row (issue 11): each guard is a pair of statement-level
-- AFTER triggers (one for INSERT, one for UPDATE: Postgres gives transition tables to
-- single-event triggers only) that check every row the statement wrote in one query. The
-- writer sends a batch's rows of a table in one statement (events/rows.py), so a batch of
-- 30 registrations pays a few checks, not sixty (row-level constraint triggers did, at
-- COMMIT, under the append lock). They fire as the statement ends, so a guarded row must be
-- written after its event in the same transaction: the writer's projections always are
-- (events/writer.py, both ways), and nothing else of the runtime's writes these tables.
--
-- Not guarded, by design: `sign_in_links` and `claim_polls` (0020, the v0.6 door) have no
-- event behind a row and decide no login alone. A forged sign-in link gives a browser
-- session, but the claim that session enables is an event of its own (registration.claimed,
-- recording how the person signed in, `auth_method`), held to the ledger like every claim;
-- a forged pacing row only changes how soon an agent may poll.
--
-- Applied, idempotently, by `authledger migrate` after the numbered migrations and by
-- `authledger replay` after it switches the read models (a rebuilt table comes without
-- triggers). Not a numbered migration for that reason.

-- Each check looks the events up with EXECUTE, planned afresh for each statement with the
-- log's present size. A plan cached while `events` was nearly empty (a new database, no
-- statistics yet) can pick events_tenant_type_idx over the unique (tenant_id, stream_id,
-- stream_version) key and then read every event of the tenant for every row until
-- autovacuum's next ANALYZE: on a fresh bench database that cost 4.7 ms of Postgres per
-- registration and four fifths of the throughput (docs/benchmarks.md, session 5). A row's
-- lookup is a LATERAL subquery with LIMIT 1: one index probe per row, never a join that
-- could scan the log. The owner's early return is static SQL, planned once.

-- Registrations, trusted issuers, delegations, subscriptions and tenants: a row's version
-- must be an event of the row's stream, and a change must come with a newer one than the
-- row had (an UPDATE's old and new rows paired by tenant and stream id, as the tables' keys
-- pair them: an issuer's stream id is the same in every tenant that trusts it; a row whose
-- pair changed is checked as a new one). Their projections write every event of the stream,
-- so a row is always at its stream's head: there is no stored event a forged change could
-- borrow.
-- TG_ARGV: [0] the stream type, [1] the column holding the stream id, [2] its prefix,
-- [3] (optional) the tenant whose log holds a row with no tenant_id.
CREATE OR REPLACE FUNCTION ledger_rows_backed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bad record;
    refused integer;
BEGIN
    -- The owner (or a superuser) could drop this trigger anyway: its own writes (a data
    -- migration, a repair) are its to answer for, not checked here.
    IF pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID),
                   'MEMBER') THEN
        RETURN NULL;
    END IF;
    EXECUTE format(
        'SELECT r.stream, r.version, r.before, w.found'
        ' FROM (SELECT $1 || n.%1$I AS stream, coalesce(n.tenant_id, $2) AS tenant,'
        '              n.version, %2$s AS before'
        '       FROM new_rows n %3$s) r'
        ' LEFT JOIN LATERAL (SELECT true AS found FROM public.events e'
        '     WHERE e.tenant_id = r.tenant AND e.stream_id = r.stream'
        '       AND e.stream_version = r.version AND e.stream_type = $3 LIMIT 1) w ON true'
        ' WHERE w.found IS NULL OR r.version <= r.before'
        ' LIMIT 1',
        TG_ARGV[1],
        CASE TG_OP WHEN 'UPDATE' THEN 'o.version' ELSE 'NULL::integer' END,
        CASE TG_OP WHEN 'UPDATE'
            THEN format('LEFT JOIN old_rows o ON o.%1$I = n.%1$I'
                        ' AND o.tenant_id IS NOT DISTINCT FROM n.tenant_id', TG_ARGV[1])
            ELSE '' END)
        INTO bad
        USING TG_ARGV[2], TG_ARGV[3], TG_ARGV[0];
    GET DIAGNOSTICS refused = ROW_COUNT;  -- EXECUTE leaves FOUND alone
    IF refused = 0 THEN
        RETURN NULL;
    ELSIF bad.found IS NULL THEN
        RAISE EXCEPTION '% row of % has no event behind it (version %)',
            TG_TABLE_NAME, bad.stream, bad.version
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION '% row of % changed without a newer event (version % after %)',
        TG_TABLE_NAME, bad.stream, bad.version, bad.before
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Credentials: the table bearer credentials are checked against (service/credential_cache).
-- A row may only be what projections/credentials.sql writes for the event at its version:
-- inserted by `credential.issued` with that token hash, kind, scopes and expiry; changed by
-- `credential.rescoped` (scopes, user, expiry as the event says), or ended by
-- `credential.revoked` / `credential.expired` while active. What it was issued as never
-- changes (an UPDATE's rows paired by credential_id: a row whose id changed has no pair and
-- is refused). An ended credential's row may lag behind its stream (a later end writes
-- nothing), which is why the event's type and content are checked, not only its version.
CREATE OR REPLACE FUNCTION credentials_rows_backed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bad record;
    refused integer;
BEGIN
    -- The owner (or a superuser) could drop this trigger anyway: its own writes (a data
    -- migration, a repair) are its to answer for, not checked here.
    IF pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID),
                   'MEMBER') THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        EXECUTE $q$
            SELECT n.credential_id, n.version, w.type FROM new_rows n
            LEFT JOIN LATERAL (
                SELECT e.type, e.payload::jsonb AS p, e.occurred_at FROM public.events e
                WHERE e.tenant_id = n.tenant_id AND e.stream_id = n.credential_id
                  AND e.stream_version = n.version AND e.stream_type = 'credential'
                LIMIT 1) w ON true
            WHERE (w.type = 'credential.issued' AND n.status = 'active'
                AND n.token_hash = w.p ->> 'token_hash' AND n.kind = w.p ->> 'kind'
                AND n.scopes = ARRAY(SELECT jsonb_array_elements_text(w.p -> 'scopes'))
                AND n.issued_via = w.p ->> 'issued_via'
                AND n.expires_at IS NOT DISTINCT FROM (w.p ->> 'expires_at')::timestamptz
                AND n.registration_id IS NOT DISTINCT FROM w.p ->> 'registration_id'
                AND n.user_id IS NOT DISTINCT FROM w.p ->> 'user_id'
                AND n.issuer IS NOT DISTINCT FROM w.p ->> 'issuer'
                AND n.delegation_id IS NOT DISTINCT FROM w.p ->> 'delegation_id'
                AND n.issued_at = w.occurred_at
                AND n.ended_at IS NULL AND n.end_reason IS NULL) IS NOT TRUE
            LIMIT 1 $q$
            INTO bad;
    ELSE
        EXECUTE $q$
            SELECT n.credential_id, n.version, w.type FROM new_rows n
            LEFT JOIN old_rows o ON o.credential_id = n.credential_id
            LEFT JOIN LATERAL (
                SELECT e.type, e.payload::jsonb AS p, e.occurred_at FROM public.events e
                WHERE e.tenant_id = n.tenant_id AND e.stream_id = n.credential_id
                  AND e.stream_version = n.version AND e.stream_type = 'credential'
                LIMIT 1) w ON true
            WHERE (n.version > o.version
                AND (n.credential_id, n.tenant_id, n.kind, n.token_hash, n.issued_via,
                     n.registration_id, n.issuer, n.delegation_id, n.issued_at)
                    IS NOT DISTINCT FROM
                    (o.credential_id, o.tenant_id, o.kind, o.token_hash, o.issued_via,
                     o.registration_id, o.issuer, o.delegation_id, o.issued_at)
                AND CASE w.type
                    WHEN 'credential.rescoped' THEN
                        n.status = o.status
                        AND n.scopes = ARRAY(SELECT jsonb_array_elements_text(w.p -> 'scopes'))
                        AND n.expires_at IS NOT DISTINCT FROM (w.p ->> 'expires_at')::timestamptz
                        AND n.user_id IS NOT DISTINCT FROM coalesce(w.p ->> 'user_id', o.user_id)
                        AND (n.ended_at, n.end_reason)
                            IS NOT DISTINCT FROM (o.ended_at, o.end_reason)
                    WHEN 'credential.revoked' THEN
                        o.status = 'active' AND n.status = 'revoked'
                        AND n.end_reason = w.p ->> 'reason' AND n.ended_at = w.occurred_at
                        AND (n.scopes, n.expires_at, n.user_id)
                            IS NOT DISTINCT FROM (o.scopes, o.expires_at, o.user_id)
                    WHEN 'credential.expired' THEN
                        o.status = 'active' AND n.status = 'expired'
                        AND n.end_reason = 'expired' AND n.ended_at = w.occurred_at
                        AND (n.scopes, n.expires_at, n.user_id)
                            IS NOT DISTINCT FROM (o.scopes, o.expires_at, o.user_id)
                    ELSE false
                END) IS NOT TRUE
            LIMIT 1 $q$
            INTO bad;
    END IF;
    GET DIAGNOSTICS refused = ROW_COUNT;  -- EXECUTE leaves FOUND alone
    IF refused = 0 THEN
        RETURN NULL;
    ELSIF bad.type IS NULL THEN
        RAISE EXCEPTION 'credentials row of % has no event behind it (version %)',
            bad.credential_id, bad.version
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION 'credentials row of % is not what its event % (version %) wrote',
        bad.credential_id, bad.type, bad.version
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Each guarded table's two triggers. The row-level constraint trigger of the same name
-- (guards before 2026-12-07) goes first, and its functions after the last of them. A DO
-- block, not a helper procedure: a temporary one would need the TEMPORARY privilege on the
-- database, which an owner role need not have.
-- Scoped operator credentials (security finding 2) are the table the access gate decides
-- from; an installation-wide one (operator, metrics) has no tenant_id, and its stream is in
-- the default tenant's log.
DO $guards$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT * FROM (VALUES
        ('credentials', 'credentials_rows_backed', ''),
        ('registrations', 'ledger_rows_backed', $a$'registration', 'registration_id', ''$a$),
        ('trusted_issuers', 'ledger_rows_backed', $a$'issuer', 'stream_id', ''$a$),
        ('delegations', 'ledger_rows_backed', $a$'delegation', 'delegation_id', ''$a$),
        ('subscriptions', 'ledger_rows_backed', $a$'subscription', 'subscription_id', ''$a$),
        ('tenants', 'ledger_rows_backed', $a$'tenant', 'tenant_id', 'ten_'$a$),
        ('access_credentials', 'ledger_rows_backed',
         $a$'access', 'credential_id', '', 'default'$a$)
    ) AS t (tbl, check_fn, args) LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', g.tbl || '_backed_by_events', g.tbl);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I',
                       g.tbl || '_changes_backed_by_events', g.tbl);
        EXECUTE format(
            'CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows'
            ' FOR EACH STATEMENT EXECUTE FUNCTION %I(%s)',
            g.tbl || '_backed_by_events', g.tbl, g.check_fn, g.args);
        EXECUTE format(
            'CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING OLD TABLE AS old_rows'
            ' NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %I(%s)',
            g.tbl || '_changes_backed_by_events', g.tbl, g.check_fn, g.args);
    END LOOP;
END
$guards$;
DROP FUNCTION IF EXISTS ledger_row_backed();
DROP FUNCTION IF EXISTS credentials_row_backed();

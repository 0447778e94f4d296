-- Write guards: a read-model row that logins are decided from exists only with the event
-- behind it (security issue 12, finding 3; docs/security.md, "The database roles").
--
-- The runtime role (privileges.sql) may INSERT and UPDATE these tables, because the inline
-- projections write them in the append's transaction. These constraint triggers make every
-- such write prove itself against the log at COMMIT: the row's `version` names the event
-- that wrote it, and that event must be stored in the row's stream (for credentials: be the
-- very event that makes this change). A row forged without an event, a revoked key set
-- active again, scopes widened, or an expiry pushed back: the COMMIT fails and nothing of
-- the transaction stays.
--
-- They check the runtime role only: the owner (or a superuser) could drop them anyway, so
-- its writes (a data migration like 0015, a repair) pass unchecked.
--
-- Why triggers, and why the runtime cannot get round them: they belong to the owner role
-- (this file runs as it), and dropping or disabling a trigger needs the table's owner;
-- `session_replication_role = replica`, which skips triggers, is for superusers only. The
-- functions name `public.events` and run with a fixed search_path, so a temporary table
-- called `events` cannot stand in for the log. DEFERRABLE INITIALLY DEFERRED: checked at
-- COMMIT, whatever order the append and the projection statements run in.
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

-- Both functions look the event up with EXECUTE, planned afresh at each call with the real
-- values. A plan cached while `events` was nearly empty (a new database, no statistics yet)
-- can pick events_tenant_type_idx over the unique (tenant_id, stream_id, stream_version) key
-- and then filter every event of the tenant, for every row, until autovacuum's next ANALYZE:
-- on a fresh bench database that cost 4.7 ms of Postgres per registration and four fifths of
-- the throughput (docs/benchmarks.md, session 5). Only the lookup is planned each time: the
-- owner's early return keeps its cached plan (a function-wide force_custom_plan re-planned it
-- for every row a rebuild folds, a fifth of `replay`'s rate).

-- Registrations, trusted issuers, delegations, subscriptions and tenants: the row's version
-- must be an event of the row's stream, and a change must come with a newer one than the
-- row had. Their projections write every event of the stream, so a row is always at its
-- stream's head: there is no stored event a forged change could borrow.
-- TG_ARGV: [0] the stream type, [1] the column holding the stream id, [2] its prefix,
-- [3] (optional) the tenant whose log holds a row with no tenant_id.
CREATE OR REPLACE FUNCTION ledger_row_backed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    fields  jsonb;
    stream  text;
    version integer;
    before  jsonb;
    found_it boolean;
BEGIN
    -- The owner (or a superuser) could drop this trigger anyway: its own writes (a data
    -- migration, a repair) are its to answer for, not checked here.
    IF pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID),
                   'MEMBER') THEN
        RETURN NULL;
    END IF;
    fields := to_jsonb(NEW);
    stream := TG_ARGV[2] || (fields ->> TG_ARGV[1]);
    version := (fields ->> 'version')::integer;
    IF TG_OP = 'UPDATE' THEN
        before := to_jsonb(OLD);
        IF TG_ARGV[2] || (before ->> TG_ARGV[1]) = stream
           AND version <= (before ->> 'version')::integer THEN
            RAISE EXCEPTION '% row of % changed without a newer event (version % after %)',
                TG_TABLE_NAME, stream, version, before ->> 'version'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    EXECUTE 'SELECT true FROM public.events e WHERE e.tenant_id = $1 AND e.stream_id = $2'
            ' AND e.stream_version = $3 AND e.stream_type = $4'
        INTO found_it
        USING coalesce(fields ->> 'tenant_id', TG_ARGV[3]), stream, version, TG_ARGV[0];
    IF found_it IS NULL THEN
        RAISE EXCEPTION '% row of % has no event behind it (version %)',
            TG_TABLE_NAME, stream, version
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;

-- Credentials: the table bearer credentials are checked against (service/credential_cache).
-- A row may only be what projections/credentials.sql writes for the event at its version:
-- inserted by `credential.issued` with that token hash, kind, scopes and expiry; changed by
-- `credential.rescoped` (scopes, user, expiry as the event says), or ended by
-- `credential.revoked` / `credential.expired` while active. What it was issued as never
-- changes. An ended credential's row may lag behind its stream (a later end writes
-- nothing), which is why the event's type and content are checked, not only its version.
CREATE OR REPLACE FUNCTION credentials_row_backed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    written record;
    p       jsonb;  -- the payload parsed once (json's operators parse the text at each use)
    scopes  text[];
    agrees  boolean;
BEGIN
    -- The owner (or a superuser) could drop this trigger anyway: its own writes (a data
    -- migration, a repair) are its to answer for, not checked here.
    IF pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID),
                   'MEMBER') THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT e.type, e.payload, e.occurred_at FROM public.events e'
            ' WHERE e.tenant_id = $1 AND e.stream_id = $2 AND e.stream_version = $3'
            ' AND e.stream_type = ''credential'''
        INTO written
        USING NEW.tenant_id, NEW.credential_id, NEW.version;
    IF written.type IS NULL THEN
        RAISE EXCEPTION 'credentials row of % has no event behind it (version %)',
            NEW.credential_id, NEW.version
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    p := written.payload::jsonb;
    scopes := ARRAY(SELECT jsonb_array_elements_text(p -> 'scopes'));
    IF TG_OP = 'INSERT' THEN
        agrees := written.type = 'credential.issued' AND NEW.status = 'active'
            AND NEW.token_hash = p ->> 'token_hash' AND NEW.kind = p ->> 'kind'
            AND NEW.scopes = scopes AND NEW.issued_via = p ->> 'issued_via'
            AND NEW.expires_at IS NOT DISTINCT FROM (p ->> 'expires_at')::timestamptz
            AND NEW.registration_id IS NOT DISTINCT FROM p ->> 'registration_id'
            AND NEW.user_id IS NOT DISTINCT FROM p ->> 'user_id'
            AND NEW.issuer IS NOT DISTINCT FROM p ->> 'issuer'
            AND NEW.delegation_id IS NOT DISTINCT FROM p ->> 'delegation_id'
            AND NEW.issued_at = written.occurred_at
            AND NEW.ended_at IS NULL AND NEW.end_reason IS NULL;
    ELSE
        agrees := NEW.version > OLD.version
            AND (NEW.credential_id, NEW.tenant_id, NEW.kind, NEW.token_hash, NEW.issued_via,
                 NEW.registration_id, NEW.issuer, NEW.delegation_id, NEW.issued_at)
                IS NOT DISTINCT FROM
                (OLD.credential_id, OLD.tenant_id, OLD.kind, OLD.token_hash, OLD.issued_via,
                 OLD.registration_id, OLD.issuer, OLD.delegation_id, OLD.issued_at)
            AND CASE written.type
                WHEN 'credential.rescoped' THEN
                    NEW.status = OLD.status AND NEW.scopes = scopes
                    AND NEW.expires_at IS NOT DISTINCT FROM (p ->> 'expires_at')::timestamptz
                    AND NEW.user_id IS NOT DISTINCT FROM coalesce(p ->> 'user_id', OLD.user_id)
                    AND (NEW.ended_at, NEW.end_reason)
                        IS NOT DISTINCT FROM (OLD.ended_at, OLD.end_reason)
                WHEN 'credential.revoked' THEN
                    OLD.status = 'active' AND NEW.status = 'revoked'
                    AND NEW.end_reason = p ->> 'reason' AND NEW.ended_at = written.occurred_at
                    AND (NEW.scopes, NEW.expires_at, NEW.user_id)
                        IS NOT DISTINCT FROM (OLD.scopes, OLD.expires_at, OLD.user_id)
                WHEN 'credential.expired' THEN
                    OLD.status = 'active' AND NEW.status = 'expired'
                    AND NEW.end_reason = 'expired' AND NEW.ended_at = written.occurred_at
                    AND (NEW.scopes, NEW.expires_at, NEW.user_id)
                        IS NOT DISTINCT FROM (OLD.scopes, OLD.expires_at, OLD.user_id)
                ELSE false
            END;
    END IF;
    IF agrees IS NOT TRUE THEN
        RAISE EXCEPTION 'credentials row of % is not what its event % (version %) wrote',
            NEW.credential_id, written.type, NEW.version
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS credentials_backed_by_events ON credentials;
CREATE CONSTRAINT TRIGGER credentials_backed_by_events
    AFTER INSERT OR UPDATE ON credentials DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION credentials_row_backed();

DROP TRIGGER IF EXISTS registrations_backed_by_events ON registrations;
CREATE CONSTRAINT TRIGGER registrations_backed_by_events
    AFTER INSERT OR UPDATE ON registrations DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_row_backed('registration', 'registration_id', '');

DROP TRIGGER IF EXISTS trusted_issuers_backed_by_events ON trusted_issuers;
CREATE CONSTRAINT TRIGGER trusted_issuers_backed_by_events
    AFTER INSERT OR UPDATE ON trusted_issuers DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_row_backed('issuer', 'stream_id', '');

DROP TRIGGER IF EXISTS delegations_backed_by_events ON delegations;
CREATE CONSTRAINT TRIGGER delegations_backed_by_events
    AFTER INSERT OR UPDATE ON delegations DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_row_backed('delegation', 'delegation_id', '');

DROP TRIGGER IF EXISTS subscriptions_backed_by_events ON subscriptions;
CREATE CONSTRAINT TRIGGER subscriptions_backed_by_events
    AFTER INSERT OR UPDATE ON subscriptions DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_row_backed('subscription', 'subscription_id', '');

DROP TRIGGER IF EXISTS tenants_backed_by_events ON tenants;
CREATE CONSTRAINT TRIGGER tenants_backed_by_events
    AFTER INSERT OR UPDATE ON tenants DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_row_backed('tenant', 'tenant_id', 'ten_');

-- Scoped operator credentials (security finding 2): the table the access gate decides from.
-- An installation-wide credential (operator, metrics) has no tenant_id; its stream is in the
-- default tenant's log.
DROP TRIGGER IF EXISTS access_credentials_backed_by_events ON access_credentials;
CREATE CONSTRAINT TRIGGER access_credentials_backed_by_events
    AFTER INSERT OR UPDATE ON access_credentials DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_row_backed('access', 'credential_id', '', 'default');

-- The one-round-trip path of EventStore appends (events/store.py, `append_fast`).
--
-- The writer already hashed the batch on the head it expects (its own last append). Under the
-- append lock this checks that the head is still that one and that each stream is where the
-- request expects it; then it inserts the rows, notifies tailers and returns 'appended'. When
-- anything differs it writes nothing and says what: 'head_moved' (another writer appended
-- since) or 'conflict' (a stream is not at its expected version, or an event id is stored
-- already); the batch then goes the long way, which reads head and versions under the lock.
--
-- VOLATILE (the default) matters: each statement below takes a fresh snapshot, so the head read
-- after the lock sees every append committed before the lock was granted.
CREATE FUNCTION events_append_fast(
    lock_key          bigint,
    expected_position bigint,
    expected_hash     bytea,
    -- requests with expected version > 0: that version must be the stream's last one
    check_tenants     text[],
    check_streams     text[],
    check_versions    integer[],
    -- the rows, as a JSON array of objects named like the columns; payload, metadata and
    -- hash in base64, so the payload's bytes (the hashed ones) arrive exactly as they are
    batch             json,
    notify_payload    text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    head_position bigint;
    head_hash     bytea;
    found         bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.position, e.hash INTO head_position, head_hash
    FROM events e ORDER BY e.position DESC LIMIT 1;
    IF coalesce(head_position, 0) <> expected_position
       OR coalesce(head_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
          <> expected_hash THEN
        RETURN 'head_moved';
    END IF;
    IF cardinality(check_versions) > 0 THEN
        -- Dynamic, so planned with the actual values and table size every time.
        EXECUTE $q$
            SELECT count(*) FROM unnest($1::text[], $2::text[], $3::integer[])
                AS c (tenant_id, stream_id, stream_version)
            WHERE EXISTS (
                SELECT FROM events e
                WHERE e.tenant_id = c.tenant_id AND e.stream_id = c.stream_id
                  AND e.stream_version = c.stream_version)
        $q$ INTO found USING check_tenants, check_streams, check_versions;
        IF found <> cardinality(check_versions) THEN
            RETURN 'conflict';
        END IF;
    END IF;
    -- Versions are gap-free, so a stream past its expected version already holds the next one:
    -- that, and an event id stored before, show as a unique violation, and nothing is written.
    BEGIN
        INSERT INTO events (
            position, event_id, tenant_id, stream_type, stream_id, stream_version, type,
            schema_version, occurred_at, recorded_at, payload, metadata, hash
        )
        SELECT r.position, r.event_id, r.tenant_id, r.stream_type, r.stream_id,
               r.stream_version, r.type, r.schema_version, r.occurred_at, r.recorded_at,
               convert_from(decode(r.payload, 'base64'), 'UTF8')::json,
               convert_from(decode(r.metadata, 'base64'), 'UTF8')::json,
               decode(r.hash, 'base64')
        FROM json_to_recordset(batch) AS r (
            position bigint, event_id uuid, tenant_id text, stream_type text, stream_id text,
            stream_version integer, type text, schema_version integer,
            occurred_at timestamptz, recorded_at timestamptz,
            payload text, metadata text, hash text
        );
    EXCEPTION WHEN unique_violation THEN
        RETURN 'conflict';
    END;
    PERFORM pg_notify('authledger_events', notify_payload);
    RETURN 'appended';
END
$$;

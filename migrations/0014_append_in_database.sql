-- Appends in one round trip whoever else appends (events/writer.py, `append`).
--
-- 0002's `events_append_fast` needed the writer to know where the log ends: it hashed the
-- batch on its own last append and the function refused ('head_moved') when another process
-- had appended since. With two HTTP processes and a worker appending, that was the usual
-- case, and most batches paid a failed try and then the long way (five round trips under the
-- lock). Here the database hands out the positions and extends the chain itself, under the
-- lock, so the batch never depends on the head:
--
--     content_digest = SHA-256(frame(position) || rest)     event_hash = SHA-256(prev || digest)
--
-- where `rest` is the rest of events.hashchain.framed_content (every field after the
-- position, framed), computed by the writer, and frame(position) is the decimal text of the
-- position behind its 4-byte big-endian length. The writer checks each returned hash against
-- its own framing (tests/integration/test_store.py), so the two stay the same function.
--
-- Under the lock: every part with an expected version > 0 must find that version stored;
-- no row's (tenant, stream, version) and no event id may be stored already (the unique
-- indexes tell, inside a subtransaction). Anything else answers 'conflict' having written
-- nothing, and the writer takes the long way, which gives
-- each request its own answer. VOLATILE (the default): each statement takes a fresh snapshot,
-- so the head read after the lock sees every append committed before it was granted.
CREATE FUNCTION events_append(
    lock_key         bigint,
    check_tenants    text[],
    check_streams    text[],
    check_versions   integer[],
    event_ids        uuid[],
    tenant_ids       text[],
    stream_types     text[],
    stream_ids       text[],
    stream_versions  integer[],
    types            text[],
    schema_versions  integer[],
    occurred         timestamptz[],
    recorded         timestamptz,
    payloads         json[],
    metadatas        json[],
    rests            bytea[],
    OUT status         text,
    OUT first_position bigint,
    OUT hashes         bytea[]
) LANGUAGE plpgsql AS $$
DECLARE
    head_position bigint;
    prev          bytea;
    pos           text;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.position, e.hash INTO head_position, prev
    FROM events e ORDER BY e.position DESC LIMIT 1;
    head_position := coalesce(head_position, 0);
    prev := coalesce(prev, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    first_position := head_position + 1;
    -- One probe of the unique index per checked stream: a statement planned once (plpgsql
    -- caches plans) must not depend on the table's size, which a join with an array would.
    FOR i IN 1 .. coalesce(cardinality(check_versions), 0) LOOP
        PERFORM FROM events e
        WHERE e.tenant_id = check_tenants[i] AND e.stream_id = check_streams[i]
          AND e.stream_version = check_versions[i];
        IF NOT FOUND THEN
            status := 'conflict';
            RETURN;
        END IF;
    END LOOP;
    hashes := '{}';
    FOR i IN 1 .. cardinality(event_ids) LOOP
        pos := (head_position + i)::text;
        prev := sha256(prev || sha256(int4send(octet_length(pos)) || convert_to(pos, 'UTF8')
                                      || rests[i]));
        hashes := hashes || prev;
    END LOOP;
    -- Versions are gap-free, so a stream past its expected version holds the next one
    -- already: that, and an event id stored before, show as a unique violation.
    BEGIN
        INSERT INTO events (
            position, event_id, tenant_id, stream_type, stream_id, stream_version, type,
            schema_version, occurred_at, recorded_at, payload, metadata, hash
        )
        SELECT head_position + r.n, r.event_id, r.tenant_id, r.stream_type, r.stream_id,
               r.stream_version, r.type, r.schema_version, r.occurred_at, recorded, r.payload,
               r.metadata, hashes[r.n]
        FROM unnest(event_ids, tenant_ids, stream_types, stream_ids, stream_versions, types,
                    schema_versions, occurred, payloads, metadatas)
            WITH ORDINALITY AS r (event_id, tenant_id, stream_type, stream_id, stream_version,
                                  type, schema_version, occurred_at, payload, metadata, n);
    EXCEPTION WHEN unique_violation THEN
        status := 'conflict';
        hashes := NULL;
        RETURN;
    END;
    PERFORM pg_notify('authledger_events', (head_position + cardinality(event_ids))::text);
    status := 'appended';
END
$$;

-- The head-guessing path it replaces (writers of an older release fall back to the long way
-- when the function is missing).
DROP FUNCTION events_append_fast(bigint, bigint, bytea, text[], text[], integer[], json, text);

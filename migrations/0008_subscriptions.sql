-- Revocation push (workers/revocation_push.py): webhook subscriptions as a read model, the
-- push workers' leases, and the lookup of a subscription's next event in the log.

-- One row per subscription ever created, folded from its stream (projections/subscriptions).
-- Disposable like every read model: no foreign keys in or out, so a rebuild can swap it.
CREATE TABLE subscriptions (
    subscription_id    text        PRIMARY KEY,
    tenant_id          text        NOT NULL,
    url                text        NOT NULL,
    audience           text        NOT NULL,
    secret_sealed      text,                   -- AES-GCM (service/push/secrets), never plain
    event_types        text[]      NOT NULL,
    reasons            text[]      NOT NULL,   -- empty: every revocation reason
    status             text        NOT NULL,   -- active | dead_letter | removed
    cursor_position    bigint      NOT NULL,   -- everything up to here is delivered (or skipped)
    attempts           integer     NOT NULL,   -- failed tries of the event at head_position
    head_position      bigint,                 -- the event being retried, or dead-lettered
    head_since         timestamptz,            -- its first failed try
    next_attempt_at    timestamptz,            -- when it may be tried again
    delivered          bigint      NOT NULL,
    failed_attempts    bigint      NOT NULL,
    last_delivered_at  timestamptz,
    last_attempt_at    timestamptz,
    last_status        integer,
    last_error         text,
    dead_lettered_at   timestamptz,
    dead_letter_cause  text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    version            integer     NOT NULL
);
CREATE INDEX subscriptions_active_idx ON subscriptions (tenant_id, next_attempt_at)
    WHERE status = 'active';

-- Which push worker is delivering to a subscription, until when. Operational state, not a
-- read model (a rebuild leaves it alone); a row exists only while a worker holds it, and a
-- lease that ran out (its worker died) may be taken over.
CREATE TABLE push_leases (
    subscription_id  text        PRIMARY KEY,
    holder           text        NOT NULL,
    lease_until      timestamptz NOT NULL
);

-- The position of the first event after `after` that a subscription with these filters is
-- sent: a credential's revocation (with one of `reasons`, when any are named) or its expiry.
-- One ordered probe per type on events_tenant_type_idx (tenant_id, type, position), so a
-- subscription far behind costs the same as one that is up to date.
CREATE FUNCTION push_next_position(
    p_tenant text, p_after bigint, p_types text[], p_reasons text[]
) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT min(position) FROM (
        (SELECT position FROM events
         WHERE tenant_id = p_tenant AND type = 'credential.revoked' AND position > p_after
           AND 'credential.revoked' = ANY (p_types)
           AND (cardinality(p_reasons) = 0 OR payload ->> 'reason' = ANY (p_reasons))
         ORDER BY position LIMIT 1)
        UNION ALL
        (SELECT position FROM events
         WHERE tenant_id = p_tenant AND type = 'credential.expired' AND position > p_after
           AND 'credential.expired' = ANY (p_types)
         ORDER BY position LIMIT 1)
    ) AS heads
$$;

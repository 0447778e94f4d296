-- name: scrape
-- What /metrics reads from Postgres, in one round trip: the head of the log ($1 = the relay's
-- checkpoint name, $2 = the tenant), the relay's checkpoint, and the webhook deliveries. The
-- delivery counters of `subscriptions` only grow (a removed subscription keeps its row);
-- dead letters are counted from the log, one probe of events_tenant_type_idx (rare events).
SELECT (SELECT coalesce(max(position), 0) FROM events) AS head,
       (SELECT position FROM checkpoints WHERE name = $1) AS relay_checkpoint,
       (SELECT coalesce(sum(delivered), 0) FROM subscriptions)::bigint AS push_delivered,
       (SELECT coalesce(sum(failed_attempts), 0) FROM subscriptions)::bigint AS push_failed,
       (SELECT count(*) FROM events
        WHERE tenant_id = $2 AND type = 'push.dead_lettered') AS push_dead_lettered

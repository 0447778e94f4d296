-- name: load_checkpoint
-- The publisher's checkpoint is two rows of `checkpoints`: `<name>` holds the log position
-- every ending event up to which is published, `<name>:seq` the stream sequence above which
-- every revocation message of a later position lies (where the restart scan begins).
SELECT coalesce((SELECT position FROM checkpoints WHERE name = $1), 0) AS position,
       coalesce((SELECT position FROM checkpoints WHERE name = $1 || ':seq'), 0) AS seq

-- name: save_checkpoint
-- Both rows in one statement, on the lock's own connection (see relay.sql `save_checkpoint`).
INSERT INTO checkpoints (name, position, updated_at)
VALUES ($1, $2, now()), ($1 || ':seq', $3, now())
ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at

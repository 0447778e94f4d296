-- name: load_checkpoint
SELECT position FROM checkpoints WHERE name = $1

-- name: save_checkpoint
-- Written on the lock's own connection: if that session died (and the lock with it), the
-- write fails and the relay starts over instead of racing a successor.
INSERT INTO checkpoints (name, position, updated_at) VALUES ($1, $2, now())
ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at

-- Snapshots of a registration's folded state (service/commands/registration_state.py), so the
-- claim commands load a registration in the same time at its 5th event and its 250th
-- (security issue 12, finding 1).
--
-- A cache, never the truth: a row is written after the events it folds have committed, and
-- a load folds whatever the stream holds after the row's version on top of it. UNLOGGED: no
-- WAL and no fsync for a write that only saves time; a crash empties the table and loads fold
-- the stream again. Erasure deletes a registration's row with its keys (the state holds the
-- attempt's blind email index). Replay does not touch it: a snapshot of immutable events
-- stays true.
CREATE UNLOGGED TABLE registration_snapshots (
    registration_id  text        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    version          integer     NOT NULL CHECK (version > 0),
    state            bytea       NOT NULL,  -- msgspec JSON of service.domain.registration.Registration
    written_at       timestamptz NOT NULL DEFAULT now()
);

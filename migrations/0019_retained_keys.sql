-- Keys that a rotation of AUTHLEDGER_SECRET_KEY keeps (security issue 12, "rotate-secret").
-- Most keys derived from the secret change with it (subject keys, signing keys and queued
-- mail are rewrapped under the new one), but the log keeps values made with two of them
-- forever: the e-mail/phone blind index and subscribers' sealed webhook secrets. Those two
-- keys stay what the first secret derived, held here wrapped (AES-256-GCM, the purpose as
-- associated data) under the current secret. No row: never rotated, both derive from the
-- current secret. Only `authledger rotate-secret` writes here; every process reads it at
-- start-up, and a secret that does not open these rows stops it.
CREATE TABLE retained_keys (
    purpose    text PRIMARY KEY,
    wrapped    bytea NOT NULL,
    rotated_at timestamptz NOT NULL DEFAULT now()
);

-- Signed checkpoints of the hash chain (workers/checkpoints.py, service/audit/).
--
-- Every N events or M minutes the checkpoint worker recomputes the chain from the previous
-- checkpoint, and if it holds, signs (position, chain hash there, signed_at) with the
-- service's EdDSA key as a compact JWS. Anyone with the public key can then check that the
-- log up to that position is the one the service had: an edit, even one that recomputes every
-- later hash, no longer reaches the signed hash. Not a projection: a rebuild never touches it.
CREATE TABLE chain_checkpoints (
    position    bigint      PRIMARY KEY CHECK (position > 0),
    chain_hash  bytea       NOT NULL CHECK (length(chain_hash) = 32),
    kid         text        NOT NULL,
    signed_at   timestamptz NOT NULL,
    jws         text        NOT NULL  -- header.payload.signature; the payload repeats the above
);

-- The public key (JWK) of every key that ever signed a checkpoint, kept here for as long as
-- its checkpoints are, whatever becomes of the key in `signing_keys` (access-token keys are
-- retired and may one day be pruned; their checkpoints must stay checkable).
CREATE TABLE chain_checkpoint_keys (
    kid         text        PRIMARY KEY,
    public_jwk  json        NOT NULL,
    first_used  timestamptz NOT NULL
);

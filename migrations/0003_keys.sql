-- Keys kept outside the log (service/crypto/pii.py, service/crypto/signing.py). Both tables hold key
-- material only wrapped (AES-256-GCM) under key-encryption keys derived from
-- AUTHLEDGER_SECRET_KEY; neither is a projection, so a rebuild never touches them.

-- One data key per data subject. Personal data enters events sealed under it; erasing the
-- subject destroys the key (wrapped_key becomes empty), the sealed events stay as they are.
CREATE TABLE subject_keys (
    subject_id   text        PRIMARY KEY,
    wrapped_key  bytea       NOT NULL,  -- nonce || AES-GCM(kek, data key); empty once erased
    created_at   timestamptz NOT NULL DEFAULT now(),
    erased_at    timestamptz,
    CONSTRAINT subject_keys_erased_means_empty
        CHECK ((erased_at IS NULL) = (length(wrapped_key) > 0))
);

-- Access-token signing keys (RFC 9068 at+jwt). The kid is the RFC 7638 thumbprint of the
-- public JWK. At most one key is active (activated, not retired); retired keys stay so that
-- the JWKS can keep publishing them while tokens they signed may still be valid.
CREATE TABLE signing_keys (
    kid           text        PRIMARY KEY,
    alg           text        NOT NULL,
    private_key   bytea       NOT NULL,  -- nonce || AES-GCM(kek, private key), aad = kid
    public_jwk    json        NOT NULL,
    created_at    timestamptz NOT NULL,
    activated_at  timestamptz,
    retired_at    timestamptz,
    CONSTRAINT signing_keys_retired_after_activated
        CHECK (retired_at IS NULL OR (activated_at IS NOT NULL AND retired_at >= activated_at))
);

CREATE UNIQUE INDEX signing_keys_one_active
    ON signing_keys ((true)) WHERE activated_at IS NOT NULL AND retired_at IS NULL;

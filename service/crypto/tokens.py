"""Secrets: identifiers and tokens (spec §4), their hashes at rest, one-time codes, derived keys.

Plain tokens leave the server once; what is stored is `token_hash` (SHA-256, enough for
values with 128+ random bits) or, for the 6-digit one-time code, `otp_hash`: an HMAC under a
key derived from the server secret and bound to its claim attempt, because a plain hash of a
million possible codes is reversed in milliseconds (spec §10 W6).

Every key the service derives from `AUTHLEDGER_SECRET_KEY` comes from `derive_key`, each
under its own purpose label below, so one derived key never doubles as another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from events.ids import random_token, time_ordered_token

# Purpose labels for derive_key: the HKDF `info`. A new label (or a new version) gives an
# unrelated key; changing an existing one makes everything stored under it unreadable.
OTP_KEY = b"authledger otp v1"
PII_KEK = b"authledger pii kek v1"
BLIND_INDEX_KEY = b"authledger blind index v1"
SIGNING_KEK = b"authledger signing kek v1"
PUSH_SECRET_KEY = b"authledger push secret v1"  # webhook subscribers' bearer secrets
RATE_LIMIT_KEY = b"authledger rate limit v1"  # rate-limit buckets (IPs, emails) by HMAC
RETAINED_KEY_WRAP = b"authledger retained keys v1"  # wraps what a rotation keeps (secret_keys)
SESSION_KEY = b"authledger session v1"  # seals the sign-in session cookie (service/signin)
CSRF_KEY = b"authledger csrf v1"  # the sign-in pages' CSRF tokens
OIDC_STATE_KEY = b"authledger oidc v1"  # seals an OIDC sign-in's state, nonce and verifier

API_KEY_PREFIX = "sk_live_"
ACCESS_TOKEN_PREFIX = "ala_"  # noqa: S105 - a prefix, not a secret
TEST_API_KEY_PREFIX = "sk_test_"  # keys minted by `authledger dev`, as auth.md's examples are
OTP_DIGITS = 6
_OTP_RANGE = 10**OTP_DIGITS


def derive_key(secret: str | bytes, purpose: bytes, length: int = 32) -> bytes:
    """A `length`-byte key for `purpose` from the server secret (HKDF-SHA256, RFC 5869)."""
    material = secret.encode() if isinstance(secret, str) else secret
    if not material:
        raise ValueError("the server secret key is empty")
    if not purpose:
        raise ValueError("a derived key needs a purpose label")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose)
    return hkdf.derive(material)


# Identifiers and tokens (spec §4). Prefixes are conventions; agents treat tokens as opaque.


def new_registration_id() -> str:
    """`reg_` + 22 base64url characters (16 random bytes)."""
    return random_token("reg_", 16)


def registration_id_for_identity(issuer: str, subject: str, audience: str) -> str:
    """The deterministic id of an ID-JAG registration: `reg_` + 22 hex of SHA-256(iss|sub|aud)."""
    digest = hashlib.sha256("|".join((issuer, subject, audience)).encode()).hexdigest()
    return "reg_" + digest[:22]


def new_claim_token() -> str:
    """`clm_` + 26 base64url characters (19 random bytes)."""
    return random_token("clm_", 19)


def new_attempt_id() -> str:
    """`cla_` + 22 base64url characters (16 random bytes)."""
    return random_token("cla_", 16)


def new_attempt_token() -> str:
    """`cvt_` + 32 base64url characters (24 random bytes): the claim e-mail's link token."""
    return random_token("cvt_", 24)


def new_api_key(prefix: str = API_KEY_PREFIX) -> str:
    """`prefix` + 27 base64url characters (20 random bytes)."""
    return random_token(prefix, 20)


def new_credential_id() -> str:
    """`cred_` + 22 base64url characters: 16 bytes, the first 6 the time in milliseconds
    (events.ids.time_ordered_token: the credentials' and the log's stream index take a long
    log's inserts on a few pages), the other 10 random."""
    return time_ordered_token("cred_")


def new_access_credential_id() -> str:
    """`acc_` + 22 base64url characters (16 random bytes): a scoped operator credential."""
    return random_token("acc_", 16)


def new_access_token() -> str:
    """`ala_` + 43 base64url characters (32 random bytes, 256 bits): a scoped operator
    credential's secret, recognisable by its prefix in a leaked file or a secret scanner."""
    return random_token(ACCESS_TOKEN_PREFIX, 32)


def new_refresh_token() -> str:
    """`rt_` + 43 base64url characters (32 random bytes): an AuthKit refresh token."""
    return random_token("rt_", 32)


def new_user_id() -> str:
    """`usr_` + 22 base64url characters (16 random bytes)."""
    return random_token("usr_", 16)


def token_hash(token: str) -> str:
    """Hex SHA-256 of a high-entropy token (API key, claim token, attempt token) for storage."""
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    """Compare two secrets (or their hashes) in time independent of where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())


# One-time codes.


def new_otp() -> str:
    """Six digits, uniform over 000000-999999 from the CSPRNG, zero-padded."""
    return f"{secrets.randbelow(_OTP_RANGE):0{OTP_DIGITS}d}"


def otp_hash(secret_key: str | bytes, attempt_id: str, otp: str) -> str:
    """Hex HMAC-SHA256 of `attempt_id:otp` under the derived OTP key.

    Binding the attempt id means a stored hash only ever matches a code for its own attempt,
    and the key means the stored hash cannot be brute-forced without the server secret.
    """
    key = derive_key(secret_key, OTP_KEY)
    message = f"{attempt_id}:{otp}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def otp_matches(stored_hash: str, secret_key: str | bytes, attempt_id: str, candidate: str) -> bool:
    """Whether `candidate` is the code whose `otp_hash` for `attempt_id` is `stored_hash`.

    Anything but six ASCII digits never matches; the comparison is constant-time.
    """
    well_formed = len(candidate) == OTP_DIGITS and candidate.isascii() and candidate.isdigit()
    computed = otp_hash(secret_key, attempt_id, candidate if well_formed else "")
    return hmac.compare_digest(computed.encode(), stored_hash.encode()) and well_formed

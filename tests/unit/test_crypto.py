"""Identifiers, token hashes, one-time codes and key derivation (service/crypto/tokens.py)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable

import pytest

from service.crypto.tokens import (
    BLIND_INDEX_KEY,
    OTP_KEY,
    PII_KEK,
    SIGNING_KEK,
    derive_key,
    new_api_key,
    new_attempt_id,
    new_attempt_token,
    new_claim_token,
    new_credential_id,
    new_otp,
    new_registration_id,
    new_user_id,
    otp_hash,
    otp_matches,
    registration_id_for_identity,
    token_hash,
    tokens_equal,
)

SECRET = "s" * 40
B64URL = "[A-Za-z0-9_-]"

FORMATS: list[tuple[Callable[[], str], str]] = [
    (new_registration_id, rf"reg_{B64URL}{{22}}"),
    (new_claim_token, rf"clm_{B64URL}{{26}}"),
    (new_attempt_id, rf"cla_{B64URL}{{22}}"),
    (new_attempt_token, rf"cvt_{B64URL}{{32}}"),
    (new_api_key, rf"sk_live_{B64URL}{{27}}"),
    (new_credential_id, rf"cred_{B64URL}{{22}}"),
    (new_user_id, rf"usr_{B64URL}{{22}}"),
]


@pytest.mark.parametrize(("make", "pattern"), FORMATS, ids=lambda v: getattr(v, "__name__", ""))
def test_identifiers_have_the_spec_format(make: Callable[[], str], pattern: str) -> None:
    """Each identifier or token is its prefix plus the spec's number of base64url characters."""
    for _ in range(200):
        assert re.fullmatch(pattern, make())


@pytest.mark.parametrize(("make", "pattern"), FORMATS, ids=lambda v: getattr(v, "__name__", ""))
def test_identifiers_do_not_repeat(make: Callable[[], str], pattern: str) -> None:
    """Ten thousand draws of each kind are all distinct."""
    assert len({make() for _ in range(10_000)}) == 10_000


def test_api_key_prefix_is_configurable() -> None:
    """The API key prefix can be the reference's `sk_test_`; the random part stays 27 chars."""
    assert re.fullmatch(rf"sk_test_{B64URL}{{27}}", new_api_key("sk_test_"))


def test_identity_registration_id_is_deterministic() -> None:
    """The ID-JAG registration id is `reg_` + the first 22 hex of SHA-256(iss|sub|aud)."""
    rid = registration_id_for_identity("https://idp.example", "user-1", "https://svc.example")
    expected = hashlib.sha256(b"https://idp.example|user-1|https://svc.example").hexdigest()
    assert rid == "reg_" + expected[:22]
    assert rid == registration_id_for_identity(
        "https://idp.example", "user-1", "https://svc.example"
    )
    assert rid != registration_id_for_identity(
        "https://idp.example", "user-2", "https://svc.example"
    )


def test_token_hash_is_hex_sha256() -> None:
    """Token hashes are the hex SHA-256 of the token, distinct for distinct tokens."""
    token = new_api_key()
    assert token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch("[0-9a-f]{64}", token_hash(token))
    assert token_hash(token) != token_hash(new_api_key())


def test_tokens_equal_compares_exactly() -> None:
    """Equal strings compare equal; any difference, including length or non-ASCII, does not."""
    assert tokens_equal("clm_abc", "clm_abc")
    assert not tokens_equal("clm_abc", "clm_abd")
    assert not tokens_equal("clm_abc", "clm_ab")
    assert tokens_equal("héllo", "héllo")
    assert not tokens_equal("héllo", "hello")


def test_otp_is_six_zero_padded_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Codes are drawn with randbelow(1_000_000) and zero-padded to six digits."""
    asked: list[int] = []

    def fake_randbelow(n: int) -> int:
        asked.append(n)
        return 42

    monkeypatch.setattr("service.crypto.tokens.secrets.randbelow", fake_randbelow)
    assert new_otp() == "000042"
    assert asked == [1_000_000]
    monkeypatch.setattr("service.crypto.tokens.secrets.randbelow", lambda n: n - 1)
    assert new_otp() == "999999"


def test_otp_digits_are_roughly_uniform() -> None:
    """Over 20 000 codes each digit appears about equally often in every position."""
    codes = [new_otp() for _ in range(20_000)]
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    for position in range(6):
        counts = Counter(code[position] for code in codes)
        assert set(counts) == set("0123456789")
        # expected 2000 each, standard deviation ~42: 1700..2300 is over 7 sigma
        assert all(1700 <= n <= 2300 for n in counts.values()), (position, counts)


def test_otp_hash_is_keyed_and_bound_to_the_attempt() -> None:
    """The hash is HMAC-SHA256 under the derived OTP key over `attempt:code`."""
    key = derive_key(SECRET, OTP_KEY)
    expected = hmac.new(key, b"cla_one:123456", hashlib.sha256).hexdigest()
    assert otp_hash(SECRET, "cla_one", "123456") == expected
    assert otp_hash(SECRET, "cla_one", "123456") != hashlib.sha256(b"123456").hexdigest()
    assert otp_hash(SECRET, "cla_two", "123456") != expected
    assert otp_hash("t" * 40, "cla_one", "123456") != expected
    assert otp_hash(SECRET, "cla_one", "123457") != expected


def test_otp_matches_only_the_right_code_for_its_attempt() -> None:
    """A code matches its own attempt under the same secret and nothing else."""
    stored = otp_hash(SECRET, "cla_one", "004711")
    assert otp_matches(stored, SECRET, "cla_one", "004711")
    assert not otp_matches(stored, SECRET, "cla_one", "004712")
    assert not otp_matches(stored, SECRET, "cla_two", "004711")
    assert not otp_matches(stored, "t" * 40, "cla_one", "004711")


@pytest.mark.parametrize(
    "candidate",
    ["", "4711", " 004711", "0047110", "\uff10\uff10\uff14\uff17\uff11\uff11", "00471a"],
)
def test_malformed_codes_never_match(candidate: str) -> None:
    """Anything but six ASCII digits is refused, even full-width digits."""
    stored = otp_hash(SECRET, "cla_one", "004711")
    assert not otp_matches(stored, SECRET, "cla_one", candidate)
    assert not otp_matches(otp_hash(SECRET, "cla_one", ""), SECRET, "cla_one", candidate)


def test_comparisons_go_through_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTP checks and token comparisons use hmac.compare_digest, not `==`."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("service.crypto.tokens.hmac.compare_digest", spy)
    stored = otp_hash(SECRET, "cla_one", "123456")
    assert otp_matches(stored, SECRET, "cla_one", "123456")
    assert not otp_matches(stored, SECRET, "cla_one", "654321")
    assert tokens_equal("a", "a")
    assert len(calls) == 3
    assert calls[0] == (stored.encode(), stored.encode())


def test_derived_keys_are_separated_by_purpose() -> None:
    """One secret gives a distinct, stable 32-byte key per purpose; str and bytes agree."""
    purposes = [OTP_KEY, PII_KEK, BLIND_INDEX_KEY, SIGNING_KEK]
    keys = [derive_key(SECRET, p) for p in purposes]
    assert all(len(k) == 32 for k in keys)
    assert len(set(keys)) == len(purposes)
    assert derive_key(SECRET, OTP_KEY) == derive_key(SECRET.encode(), OTP_KEY)
    assert derive_key("t" * 40, OTP_KEY) != derive_key(SECRET, OTP_KEY)
    assert len(derive_key(SECRET, OTP_KEY, length=64)) == 64


def test_derive_key_refuses_empty_inputs() -> None:
    """An empty secret or purpose is a configuration bug, not a key."""
    with pytest.raises(ValueError, match="secret"):
        derive_key("", OTP_KEY)
    with pytest.raises(ValueError, match="purpose"):
        derive_key(SECRET, b"")

"""CSRF on the sign-in pages (service/signin/csrf.py) and the `return_to` rule
(service/signin/return_to.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.signin.csrf import (
    CSRF_COOKIE,
    cross_site_refusal,
    csrf_ok,
    csrf_token,
    new_pre_session_value,
    origin_of,
    pre_session_cookie,
)
from service.signin.keys import SignInKeys
from service.signin.return_to import MAX_RETURN_TO, safe_return_to

KEYS = SignInKeys.from_secret("c" * 48)
OTHER_KEYS = SignInKeys.from_secret("d" * 48)
LOCAL = "http://127.0.0.1:8000"
PUBLIC = "https://auth.example.com"


def test_token_shape_and_round_trip() -> None:
    """A token is 128 bits of hex and checks for its purpose and binding."""
    token = csrf_token(KEYS, "claim", "ses_1")
    assert len(token) == 32
    assert int(token, 16) >= 0
    assert csrf_ok(KEYS, "claim", "ses_1", token)
    assert csrf_token(KEYS, "claim", "ses_1") == token  # stateless: the same every time


@pytest.mark.parametrize(
    ("purpose", "binding", "keys"),
    [("deny", "ses_1", KEYS), ("claim", "ses_2", KEYS), ("claim", "ses_1", OTHER_KEYS)],
)
def test_token_is_bound_to_purpose_session_and_secret(
    purpose: str, binding: str, keys: SignInKeys
) -> None:
    """The token of one form, session or secret fails for any other."""
    assert not csrf_ok(keys, purpose, binding, csrf_token(KEYS, "claim", "ses_1"))


def test_the_separator_keeps_purpose_and_binding_apart() -> None:
    """("ab", "c") and ("a", "bc") give different tokens."""
    assert csrf_token(KEYS, "ab", "c") != csrf_token(KEYS, "a", "bc")


@pytest.mark.parametrize(
    ("binding", "presented"),
    [(None, "x"), ("", "x"), ("ses_1", None), ("ses_1", ""), ("ses_1", "é" * 32)],
)
def test_missing_pieces_never_pass(binding: str | None, presented: str | None) -> None:
    """No binding (no session, no pre-session cookie) or no token is a refusal."""
    assert not csrf_ok(KEYS, "login", binding, presented)


def test_a_token_needs_purpose_and_binding() -> None:
    """Making a token for an empty binding is a programming error, not a token."""
    with pytest.raises(ValueError, match="binding"):
        csrf_token(KEYS, "login", "")


@given(st.text(min_size=1, max_size=40))
def test_no_guess_of_another_length_passes(guess: str) -> None:
    """A presented value passes only if it is the token itself."""
    token = csrf_token(KEYS, "login", "csr_x")
    assert csrf_ok(KEYS, "login", "csr_x", guess) == (guess == token)


def test_pre_session_cookie() -> None:
    """A random value, in an HttpOnly Lax cookie for an hour, named by the issuer."""
    one, two = new_pre_session_value(), new_pre_session_value()
    assert one != two
    assert one.startswith("csr_")
    local = pre_session_cookie(LOCAL, one)
    assert (local.key, local.value, local.max_age, local.httponly, local.samesite) == (
        CSRF_COOKIE, one, 3600, True, "lax",
    )  # fmt: skip
    assert not local.secure
    public = pre_session_cookie(PUBLIC, one)
    assert (public.key, public.secure) == ("__Host-authledger_csrf", True)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://auth.example.com", "https://auth.example.com"),
        ("https://Auth.Example.com:443/t/acme", "https://auth.example.com"),
        ("https://auth.example.com:8443/", "https://auth.example.com:8443"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://localhost:80", "http://localhost"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    """The issuer's origin as a browser writes it."""
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Sec-Fetch-Site": "same-origin", "Origin": PUBLIC},
        {"sec-fetch-site": "none"},
        {"Sec-Fetch-Site": "same-site"},
        {"ORIGIN": "https://AUTH.example.com"},
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},  # no-referrer hides our origin
    ],
)
def test_same_site_requests_pass(headers: dict[str, str]) -> None:
    """Our own origin, a navigation, or no header at all: not refused."""
    assert cross_site_refusal(headers, PUBLIC) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"sec-fetch-site": "Cross-Site", "Origin": PUBLIC},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "null", "Sec-Fetch-Site": "same-site"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://auth.example.com"},
        {"Origin": "https://auth.example.com:8443"},
        {"Origin": ""},
    ],
)
def test_cross_site_requests_are_refused(headers: dict[str, str]) -> None:
    """A cross-site fetch, or an Origin present and not ours, is refused with a reason."""
    assert cross_site_refusal(headers, PUBLIC)


@pytest.mark.parametrize(
    "value",
    [
        "/claim?claim_attempt_token=cvt_abc",
        "/claim/deny",
        "/claim?claim_attempt_token=cvt_a%2Fb",
        "/claim?" + "x" * (MAX_RETURN_TO - 7),
    ],
)
def test_return_to_accepts_our_claim_page(value: str) -> None:
    """Our claim page, with its query, up to 512 characters."""
    assert safe_return_to(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        42,
        "/claim",
        "/claims?x",
        "/login?return_to=/claim?x",
        "https://evil.example/claim?x",
        "//evil.example/claim?x",
        "/claim?next=//evil.example",
        "/claim/\\evil.example",
        "/\\evil.example/claim?x",
        "/claim?x\r\nSet-Cookie: a=b",
        "/claim?x y",
        "/claim?é",
        "/claim?" + "x" * (MAX_RETURN_TO - 6),
        "javascript:/claim?x",
        "/claim/../admin",
        "/claim/./x",
        "/claim/%2e%2e/admin",
        "/claim/%2E%2E/admin?x",
        "/claim/deny/..",
    ],
)
def test_return_to_refuses_everything_else(value: object) -> None:
    """Other paths, hosts, schemes, backslashes, whitespace, non-ASCII, too long, and dot
    segments (plain or percent-encoded) that would leave the claim page: refused."""
    assert safe_return_to(value) is None


@given(st.text(max_size=60))
def test_a_safe_return_to_stays_on_this_host(value: str) -> None:
    """Whatever is accepted is a path of our claim page, never another host."""
    accepted = safe_return_to("/claim?" + value)
    if accepted is not None:
        assert accepted.startswith("/claim?")
        assert "//" not in accepted
        assert "\\" not in accepted

"""The sign-in session cookie (service/signin/sessions.py, cookies.py): it opens only as made,
for its tenant and cookie, until it ends; its name and flags follow the issuer."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.signin.cookies import CookieSpec, cookie_name, loopback_http, seal, unseal
from service.signin.keys import SignInKeys
from service.signin.sessions import (
    SESSION_COOKIE,
    Session,
    clear_session_cookie,
    new_session,
    open_session,
    session_cookie,
)

KEYS = SignInKeys.from_secret("s" * 48)
OTHER_KEYS = SignInKeys.from_secret("t" * 48)
LOCAL = "http://127.0.0.1:8000"
PUBLIC = "https://auth.example.com"
NOW = datetime(2026, 12, 6, 12, 0, 30, tzinfo=UTC)
DAY = timedelta(days=1)


def made(issuer: str = LOCAL, tenant: str = "default", **fields: object) -> tuple[Session, str]:
    session = new_session("ana@example.net", "email_link", now=NOW, ttl=DAY)
    spec = session_cookie(KEYS, tenant_id=tenant, issuer=issuer, session=session)
    return session, spec.value


def opened(
    value: str | None,
    *,
    issuer: str = LOCAL,
    tenant: str = "default",
    now: datetime = NOW,
    keys: SignInKeys = KEYS,
) -> Session | None:
    return open_session(keys, tenant_id=tenant, issuer=issuer, value=value, now=now)


def test_round_trip() -> None:
    """A session sealed into its cookie opens to the same session."""
    session, value = made()
    assert opened(value) == session
    assert session.sid.startswith("ses_")
    assert session.auth_time == NOW.replace(microsecond=0)
    assert session.expires_at == session.auth_time + DAY


def test_oidc_session_keeps_its_issuer() -> None:
    """An OIDC session carries the provider; it and the method survive the round trip."""
    session = new_session("bo@example.net", "oidc", now=NOW, ttl=DAY, idp="https://idp.example")
    value = session_cookie(KEYS, tenant_id="default", issuer=LOCAL, session=session).value
    got = opened(value)
    assert got is not None
    assert (got.method, got.idp, got.email) == ("oidc", "https://idp.example", "bo@example.net")


@pytest.mark.parametrize(
    ("email", "method", "idp"),
    [
        ("", "email_link", None),
        ("a@b", "oidc", None),
        ("a@b", "email_link", "x"),
        ("a@b", "pw", None),
    ],
)
def test_new_session_refuses_incoherent_fields(email: str, method: str, idp: str | None) -> None:
    """No address, an OIDC session without its issuer (or the reverse), an unknown method."""
    with pytest.raises(ValueError, match="session"):
        new_session(email, method, now=NOW, ttl=DAY, idp=idp)  # type: ignore[arg-type]


def test_two_sessions_differ() -> None:
    """Each session has its own sid, and each sealing its own nonce."""
    one, value_one = made()
    two, value_two = made()
    assert one.sid != two.sid
    assert value_one != value_two


def test_expiry_at_exp() -> None:
    """The session opens until the second before its end, not at it."""
    session, value = made()
    assert opened(value, now=session.expires_at - timedelta(seconds=1)) == session
    assert opened(value, now=session.expires_at) is None


def test_other_tenant_or_cookie_or_secret_does_not_open() -> None:
    """The aad binds tenant and cookie name; another secret's key opens nothing."""
    _, value = made(tenant="acme")
    assert opened(value, tenant="acme") is not None
    assert opened(value, tenant="default") is None
    assert opened(value, tenant="acme", keys=OTHER_KEYS) is None
    _, local = made(issuer=LOCAL)
    assert opened(local, issuer=PUBLIC) is None  # the name differs: __Host-authledger_session
    csrf_name = cookie_name(LOCAL, "authledger_oidc")
    assert unseal(KEYS.session, "default", csrf_name, local) is None


@pytest.mark.parametrize("value", [None, "", "x", "!!!!", "a" * 5000, "é" * 40])
def test_garbage_does_not_open(value: str | None) -> None:
    """Absent, short, non-base64url, oversized or non-ASCII values are no session."""
    assert opened(value) is None


def forged(fields: dict[str, object]) -> str:
    return seal(KEYS.session, "default", SESSION_COOKIE, fields)


def valid_fields(**changes: object) -> dict[str, object]:
    at = int(NOW.timestamp())
    base: dict[str, object] = {
        "v": 1, "sid": "ses_1", "email": "a@b", "method": "email_link", "idp": None,
        "auth_time": at, "exp": at + 60,
    }  # fmt: skip
    return {**base, **changes}


def test_sealed_fields_are_checked_too() -> None:
    """Even sealed with our key, a wrong version, type or time is no session."""
    assert opened(forged(valid_fields())) is not None
    at = int(NOW.timestamp())
    for changes in (
        {"v": 2}, {"sid": ""}, {"email": 5}, {"method": "password"}, {"idp": 3},
        {"exp": "later"}, {"exp": True}, {"auth_time": at + 61}, {"exp": 10**12},
        {"auth_time": None},
    ):  # fmt: skip
        assert opened(forged(valid_fields(**changes))) is None, changes
    assert opened(seal(KEYS.session, "default", SESSION_COOKIE, [1])) is None  # type: ignore[arg-type]


def test_the_address_is_not_readable_in_the_cookie() -> None:
    """The cookie value is ciphertext: neither the address nor any field name is in it."""
    _, value = made()
    raw = base64.urlsafe_b64decode(value + "==")
    assert b"ana@example.net" not in raw
    assert b"email" not in raw
    assert unseal(KEYS.session, "default", SESSION_COOKIE, value) is not None


VALUE = made()[1]


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(VALUE) - 1), replacement=st.characters(codec="utf-8"))
def test_any_single_character_tamper_does_not_open(position: int, replacement: str) -> None:
    """Replacing any one character of a session cookie makes it no session."""
    if replacement == VALUE[position]:
        replacement = "A" if VALUE[position] != "A" else "B"
    assert opened(VALUE[:position] + replacement + VALUE[position + 1 :]) is None


def test_cookie_flags_on_loopback() -> None:
    """On loopback http: the plain name, HttpOnly, Lax, Path=/, not Secure, the session's age."""
    session, _ = made()
    spec = session_cookie(KEYS, tenant_id="default", issuer=LOCAL, session=session)
    assert loopback_http(LOCAL)
    assert (spec.key, spec.secure, spec.httponly, spec.samesite, spec.path, spec.max_age) == (
        "authledger_session", False, True, "lax", "/", 86400,
    )  # fmt: skip
    assert (
        spec.header()
        == f"authledger_session={spec.value}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax"
    )


@pytest.mark.parametrize(
    "issuer", [PUBLIC, "https://127.0.0.1:8443", "http://auth.example.com", "http://10.0.0.5"]
)
def test_cookie_flags_elsewhere(issuer: str) -> None:
    """Anywhere but loopback http: `__Host-` and Secure (which plain http cannot set)."""
    session, _ = made(issuer)
    spec = session_cookie(KEYS, tenant_id="default", issuer=issuer, session=session)
    assert spec.key == "__Host-authledger_session"
    assert spec.secure
    assert spec.header().endswith("; HttpOnly; SameSite=Lax; Secure")
    assert "Domain" not in spec.header()


@pytest.mark.parametrize("issuer", ["http://localhost:8000", "http://[::1]:8000", LOCAL])
def test_loopback_forms(issuer: str) -> None:
    """localhost, ::1 and 127.0.0.1 over http are loopback."""
    assert loopback_http(issuer)
    assert cookie_name(issuer, SESSION_COOKIE) == SESSION_COOKIE


def test_sign_out_clears_the_cookie() -> None:
    """The clearing Set-Cookie names the same cookie, empty, Max-Age=0, same flags."""
    for issuer, name in ((LOCAL, "authledger_session"), (PUBLIC, "__Host-authledger_session")):
        cleared = clear_session_cookie(issuer)
        assert (cleared.key, cleared.value, cleared.max_age) == (name, "", 0)
        spec = CookieSpec(name, "v", 10, cleared.secure)
        assert spec.cleared() == cleared

"""The sign-in pages' templates (service/http/sign_in_templates.py): every value escaped, no
script, forms only to this service, the address masked on the link's page."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from service.http.sign_in_templates import (
    inbox_view,
    link_view,
    login_view,
    mask_email,
    signed_in_view,
)

HOSTILE = '"><script>alert(1)</script>&'
WHEN = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def test_every_value_is_escaped() -> None:
    """A hostile service name, address, return_to, token or CSRF value never leaves its
    attribute or text: no tag, no script."""
    pages = [
        login_view(
            service_name=HOSTILE,
            action="https://a.example/login",
            return_to=HOSTILE,
            csrf=HOSTILE,
            email=True,
            oidc=(HOSTILE, HOSTILE),
            typed=HOSTILE,
            error=HOSTILE,
        ),
        inbox_view(service_name=HOSTILE, email=HOSTILE, expires_at=WHEN),
        link_view(
            service_name=HOSTILE,
            email=HOSTILE + "@x",
            action=HOSTILE,
            token=HOSTILE,
            csrf=HOSTILE,
            expires_at=WHEN,
        ),
        signed_in_view(service_name=HOSTILE, email=HOSTILE, logout_action=HOSTILE, csrf=HOSTILE),
    ]
    for page in pages:
        assert "<script" not in page
        assert HOSTILE not in page
        assert "&quot;&gt;&lt;script&gt;" in page


def test_login_view_offers_what_sign_in_names() -> None:
    """The e-mail form only with `email`, the provider's link only with `oidc`."""
    oidc = ("https://a.example/login/oidc?r", "SSO")
    both = login_view(service_name="S", action="https://a.example/login", return_to="/claim?x",
                      csrf="c", email=True, oidc=oidc)  # fmt: skip
    assert '<form method="post" action="https://a.example/login">' in both
    assert 'name="return_to" value="/claim?x"' in both
    assert "Sign in with SSO" in both
    mail_only = login_view(service_name="S", action="/login", return_to="/claim?x", csrf="c",
                           email=True, oidc=None)  # fmt: skip
    oidc_only = login_view(service_name="S", action="/login", return_to="/claim?x", csrf="c",
                           email=False, oidc=("/login/oidc", "SSO"))  # fmt: skip
    assert "Sign in with" not in mail_only
    assert "<form" not in oidc_only


def test_mask_email() -> None:
    """First character of the local part, then the domain."""
    assert mask_email("Ana.Lopez@Example.net") == "A…@Example.net"
    assert mask_email("x@y.z") == "x…@y.z"
    assert mask_email("no-at-sign") == "…"


@given(st.emails())
def test_mask_email_hides_the_local_part(email: str) -> None:
    """Of the local part, only its first character is ever shown."""
    local, _, domain = email.rpartition("@")
    masked = mask_email(email)
    assert masked == f"{local[0]}…@{domain}"
    if len(local) > 1:
        assert local not in masked

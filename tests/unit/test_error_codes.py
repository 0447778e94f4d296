"""Every protocol error code has its HTTP status; the v0.6 door's are the design's table
(docs/design/v06-dialect.md, section 5.1)."""

from __future__ import annotations

from typing import get_args

from service.domain.errors import STATUS, Code, ProtocolError

V06: dict[Code, int] = {
    "invalid_login_hint": 400, "service_auth_not_enabled": 400,
    "identity_assertion_not_enabled": 400, "interaction_required": 401, "login_required": 401,
    "invalid_grant": 400, "unsupported_grant_type": 400, "authorization_pending": 400,
    "slow_down": 400, "access_denied": 400, "expired_token": 400, "authentication_failed": 400,
    "user_code_invalid": 401, "user_code_expired": 410, "wrong_account": 403, "not_found": 404,
    "invalid_refresh_token": 400, "invalid_claim": 400, "claim_not_confirmed": 409,
    "invalid_user_code": 401, "already_claimed": 409,
}  # fmt: skip


def test_every_code_has_exactly_one_status() -> None:
    """The Literal and the table name the same codes; every status is a client error."""
    assert set(get_args(Code)) == set(STATUS)
    assert len(get_args(Code)) == len(set(get_args(Code)))
    assert all(400 <= status < 500 for status in STATUS.values())


def test_the_v06_codes_have_the_designs_statuses() -> None:
    """Each v0.6 code answers with the status the design gives it, and the v1 codes that the
    v0.6 door reuses keep theirs."""
    assert {code: STATUS[code] for code in V06} == V06
    reused: dict[Code, int] = {
        "invalid_claim_token": 401, "claimed_or_in_flight": 409, "claim_expired": 410,
        "previously_claimed": 409, "rate_limited": 429, "invalid_issuer": 400,
    }  # fmt: skip
    for code, status in reused.items():
        assert ProtocolError(code, "x").status == status

"""Protocol errors: a spec error code with its HTTP status (spec §9).

The v1 door's codes come first; then the v0.6 door's (docs/design/v06-dialect.md, section
5.1), answered in the shape of each route family (`{error, message, error_description}` at
/agent/identity, RFC 6749's `{error, error_description}` at /oauth2/*, `{err, description}`
at the SET intake, an HTML page on the person's pages); then the AuthKit profile's.
"""

from __future__ import annotations

from typing import Literal

Code = Literal[
    "invalid_request",
    "unsupported_credential_type",
    "anonymous_not_enabled",
    "verified_email_not_enabled",
    "rate_limited",
    "invalid_claim_token",
    "claimed_or_in_flight",
    "claim_expired",
    "claim_superseded",
    "claim_completed",
    "otp_not_generated",
    "otp_expired",
    "otp_invalid",
    "previously_claimed",
    "unauthorized",
    "invalid_issuer",
    "invalid_signature",
    "expired",
    "invalid_audience",
    "replay_detected",
    "missing_verified_email",
    "invalid_client_id",
    "insufficient_user_authentication",
    # the v0.6 door
    "invalid_login_hint",
    "service_auth_not_enabled",
    "identity_assertion_not_enabled",
    "interaction_required",
    "login_required",
    "invalid_grant",
    "unsupported_grant_type",
    "authorization_pending",
    "slow_down",
    "access_denied",
    "expired_token",
    "authentication_failed",
    "user_code_invalid",
    "user_code_expired",
    "wrong_account",
    "not_found",
    # the v0.6 door's AuthKit profile
    "invalid_refresh_token",
    "invalid_claim",
    "claim_not_confirmed",
    "invalid_user_code",
    "already_claimed",
]

STATUS: dict[Code, int] = {
    "invalid_request": 400,
    "unsupported_credential_type": 400,
    "anonymous_not_enabled": 400,
    "verified_email_not_enabled": 400,
    "rate_limited": 429,
    "invalid_claim_token": 401,
    "claimed_or_in_flight": 409,
    "claim_expired": 410,
    "claim_superseded": 410,
    "claim_completed": 409,
    "otp_not_generated": 400,
    "otp_expired": 410,
    "otp_invalid": 401,
    "previously_claimed": 409,
    "unauthorized": 401,
    "invalid_issuer": 400,
    "invalid_signature": 400,
    "expired": 400,
    "invalid_audience": 400,
    "replay_detected": 400,
    "missing_verified_email": 400,
    "invalid_client_id": 400,
    "insufficient_user_authentication": 400,
    "invalid_login_hint": 400,  # V1 service_auth: the hint is not an e-mail address
    "service_auth_not_enabled": 400,  # O-M
    "identity_assertion_not_enabled": 400,  # O-M
    "interaction_required": 401,  # V1 ID-JAG step-up: the person must sign in and type a code
    "login_required": 401,  # V1 ID-JAG: `auth_time` missing, stale or ahead
    "invalid_grant": 400,  # V6/V7 (RFC 6749 5.2)
    "unsupported_grant_type": 400,
    "authorization_pending": 400,  # V7 (RFC 8628 3.5)
    "slow_down": 400,
    "access_denied": 400,  # V7: the person denied the attempt (O-G)
    "expired_token": 400,  # V7: unknown or ended claim token, or the code's time is up
    "authentication_failed": 400,  # V9: a SET's signature, audience, type or times
    "user_code_invalid": 401,  # V5: a wrong code
    "user_code_expired": 410,  # V5: the code voided or past its end
    "wrong_account": 403,  # V4/V5: signed in as another address than the hint (O-J)
    "not_found": 404,  # a door that is off, an unknown or replaced link
    "invalid_refresh_token": 400,
    "invalid_claim": 400,
    "claim_not_confirmed": 409,
    "invalid_user_code": 401,
    "already_claimed": 409,
}


class ProtocolError(Exception):
    """A refusal the agent (or the claim page) is told about, with the spec's code."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code: Code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.message!r})"

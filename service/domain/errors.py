"""Protocol errors: a spec error code with its HTTP status (spec §9)."""

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

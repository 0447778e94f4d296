"""The OpenAPI declarations of the AuthKit profile's own route (contract [PR28]): the agent's
`POST /agent/identity/claim/complete`. V1 and V2 keep their documents (v06_docs.py), which
describe the main profile's bodies at the same paths."""

from __future__ import annotations

from typing import Any

from service.http.answers import Doc, IdentityError, Timestamp
from service.http.openapi import documented, json_body, ok
from service.http.v06_docs import CLAIM_ATTEMPT_BODY

COMPLETE_BODY: dict[str, Any] = {
    "title": "CompleteBody",
    "type": "object",
    "properties": {
        "claim_token": CLAIM_ATTEMPT_BODY["properties"]["claim_token"],
        "user_code": {"type": "string", "pattern": "^[0-9]{6}$"},
    },
    "required": ["claim_token", "user_code"],
    "additionalProperties": False,
}


class RefreshToken(Doc, frozen=True):
    value: str
    expires_at: Timestamp


class CompletedIdentity(Doc, frozen=True):
    """The claimed registration's assertion and its first refresh token."""

    assertion: str
    expires_at: Timestamp
    refresh_token: RefreshToken


class ClaimCompleted(Doc, frozen=True):
    """The claim, once: the registration's id and what the agent holds from now on."""

    id: str
    status: str
    identity: CompletedIdentity


COMPLETE_DOC = documented(
    body=json_body(COMPLETE_BODY),
    answers={
        200: ok(
            ClaimCompleted,
            "Claimed (AuthKit profile only; 404 `not_found` elsewhere): exchange the assertion "
            "at the token endpoint, refresh it at the identity endpoint with "
            "`{type: refresh, refresh_token}`; each refresh token works once.",
        )
    },
    refusals=(400, 401, 404, 409, 410, 413, 429),
    operation_id="completeClaimAuthKit",
    error_body=IdentityError,
)

"""The OpenAPI declarations of the AuthKit profile's own route (contract [PR28]): the agent's
`POST /agent/identity/claim/complete`. V1 and V2 answer both profiles' bodies at the same
paths: their documents (v06_docs.py) list the nested ones (service/http/authkit_answers.py)
beside main's."""

from __future__ import annotations

from typing import Any

from service.http.answers import IdentityError
from service.http.authkit_answers import ClaimCompleted
from service.http.openapi import documented, json_body, ok
from service.http.v06_docs import CLAIM_ATTEMPT_BODY, NESTED_EXCHANGE, REFRESH_LINK

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


COMPLETE_DOC = documented(
    body=json_body(COMPLETE_BODY),
    answers={
        200: ok(
            ClaimCompleted,
            "Claimed (AuthKit profile only; 404 `not_found` elsewhere): exchange the assertion "
            "at the token endpoint, refresh it at the identity endpoint with "
            "`{type: refresh, refresh_token}`; each refresh token works once.",
            refresh=REFRESH_LINK,
            exchange=NESTED_EXCHANGE,
        )
    },
    refusals=(400, 401, 404, 409, 410, 413, 429),
    operation_id="completeClaimAuthKit",
    error_body=IdentityError,
)

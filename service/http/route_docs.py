"""The OpenAPI declarations of the routes whose bodies and answers live elsewhere: health,
discovery, the agent's endpoints (E4 to E9), the resource server, /metrics and the audit API.
(The admin and subscription routes declare theirs beside their own body types.)
"""

from __future__ import annotations

from typing import Any

from service.http.answers import (
    COMPACT_JWT,
    MARKDOWN_TEXT,
    PAGE,
    PROMETHEUS_TEXT,
    AnonymousRegistered,
    AuditTimeline,
    ChainReport,
    Challenge,
    Claimed,
    ClaimStarted,
    Delegated,
    EmailRegistered,
    Health,
    Index,
    Introspection,
    KeySet,
    Me,
    ResourceMetadata,
    Revoked,
    ServerMetadata,
)
from service.http.bodies import ChallengeBody, CompleteBody, RegisterBody, StartClaimBody, Token
from service.http.openapi import (
    ADMIN,
    AGENT,
    FORM,
    HTML,
    INTROSPECTION,
    JSON,
    LOGOUT_JWT,
    METRICS,
    OPERATOR,
    documented,
    form_body,
    json_body,
    link_body,
    ok,
    one_of,
    query,
    schema_dict,
)
from service.tenancy.config import ID_JAG

METRICS_DOC = documented(
    answers={
        200: ok({"text/plain": PROMETHEUS_TEXT}, "The metrics (service.observability.metrics)")
    },
    refusals=(401,),
    security=METRICS,
)
INDEX_DOC = documented(
    answers={
        200: ok(
            {HTML: PAGE, JSON: Index},
            "Links to auth.md, discovery, the API docs and the sample resource: the page, or "
            "JSON when the client asks for application/json",
        )
    },
    database=False,
)
HEALTH_DOC = documented(answers={200: ok(Health, "The process answers")}, database=False)
READY_DOC = documented(
    answers={200: ok(Health, "Postgres answers, migrations are current, NATS is connected")},
    refusals=(503,),
)
PRM_DOC = documented(
    answers={200: ok(ResourceMetadata, "RFC 9728 metadata (spec §3.2)")}, database=False
)
# Under the path-inserted prefix: found only at the request's tenant's own resource path.
INSERTED_PRM_DOC = documented(
    answers={200: ok(ResourceMetadata, "RFC 9728 metadata (spec §3.2)")},
    refusals=(404,),
    database=False,
)
AS_DOC = documented(
    answers={200: ok(ServerMetadata, "AS metadata with `agent_auth` (§3.3)")}, database=False
)
AUTH_MD_DOC = documented(
    answers={200: ok({"text/markdown": MARKDOWN_TEXT}, "The walkthrough for agents (§3.4)")},
    database=False,
)
JWKS_DOC = documented(
    answers={200: ok(KeySet, "The keys of the access tokens and of the v0.6 identity assertions")}
)
ME_DOC = documented(
    answers={200: ok(Me, "The credential presented")}, refusals=(401, 403), security=AGENT
)
INTROSPECT_DOC = documented(
    body={
        FORM: {
            "type": "object",
            "properties": {
                "token": {"type": "string", "minLength": 1},
                "token_type_hint": {"type": "string"},
            },
            "required": ["token"],
        }
    },
    answers={200: ok(Introspection, "RFC 7662: `active` and, when active, the claims")},
    refusals=(400, 401, 413),
    security=INTROSPECTION,
)
REVOKE_DOC = documented(
    body={
        LOGOUT_JWT: COMPACT_JWT,
        FORM: {
            "type": "object",
            "properties": {"logout_token": COMPACT_JWT},
            "required": ["logout_token"],
            "additionalProperties": False,
        },
    },
    answers={200: ok(Revoked, "How many credentials the logout token revoked")},
    refusals=(400, 413, 429),
    operation_id="revoke",
)
# E4's body as the protocol has it (spec §2, §5): the decoder (RegisterBody) checks the types,
# the handler the values; the document says both, so generated requests reach each flow.
EMAIL_PATTERN = (  # service.http.bodies.check_email
    r"^(?!.*\.\.)[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
)
EMAIL: dict[str, Any] = {
    "type": "string",
    "minLength": 3,
    "maxLength": 254,
    "pattern": EMAIL_PATTERN,
}
_NOTHING: dict[str, Any] = {"type": "null"}
CREDENTIAL_TYPES: dict[str, Any] = {"enum": ["api_key", "access_token"]}


def _registration(kind: str, **properties: dict[str, Any]) -> dict[str, Any]:
    fields = {"type": {"const": kind}, "requested_credential_type": CREDENTIAL_TYPES}
    fields |= properties
    required = [name for name, schema in fields.items() if schema is not _NOTHING]
    return {
        "type": "object",
        "properties": fields,
        "required": required,
        "additionalProperties": False,
    }


REGISTER_BODY: dict[str, Any] = {
    "title": RegisterBody.__name__,
    "oneOf": [
        _registration("anonymous", assertion_type=_NOTHING, assertion=_NOTHING),
        _registration(
            "identity_assertion", assertion_type={"const": "verified_email"}, assertion=EMAIL
        ),
        _registration(
            "identity_assertion",
            assertion_type={"const": ID_JAG},
            assertion=COMPACT_JWT
            | {"maxLength": 8192, "description": "an ID-JAG (compact JWS, spec §5.3)"},
        ),
    ],
}
START_CLAIM_BODY: dict[str, Any] = schema_dict(StartClaimBody)
START_CLAIM_BODY["properties"]["email"] = EMAIL

REGISTER_DOC = documented(
    body=json_body(REGISTER_BODY),
    answers={
        200: ok(
            one_of(AnonymousRegistered, EmailRegistered, Delegated),
            "Registered (§5.1 anonymous, §5.2 verified_email, §5.3 ID-JAG)",
            start_claim=link_body("startClaim", claim_token="claim_token"),  # noqa: S106
            complete_claim=link_body("completeClaim", claim_token="claim_token"),  # noqa: S106
        )
    },
    refusals=(400, 413, 429),
    operation_id="register",
)
START_CLAIM_DOC = documented(
    body=json_body(START_CLAIM_BODY),
    answers={200: ok(ClaimStarted, "The claim mail is on its way (through the outbox)")},
    refusals=(400, 401, 409, 410, 413, 429),
    operation_id="startClaim",
)
VIEW_DOC = documented(
    answers={200: ok({HTML: PAGE}, "The person's page: what the link claims; mints nothing")},
    refusals=(400, 404, 409, 410),
    refusal_media=(HTML,),
    parameters=[query("token", Token, "the claim attempt token from the mail's link")],
    operation_id="viewClaim",
)
CHALLENGE_DOC = documented(
    body=json_body(ChallengeBody) | form_body(claim_attempt_token=Token),
    answers={
        200: ok(
            {JSON: Challenge, HTML: PAGE},
            "The one-time code: JSON for a JSON request, the page for the form's POST",
        )
    },
    refusals=(400, 409, 410, 413, 429),
    refusal_media=(JSON, HTML),
    operation_id="challenge",
)
COMPLETE_DOC = documented(
    body=json_body(CompleteBody),
    answers={200: ok(Claimed, "Claimed, exactly once")},
    refusals=(400, 401, 409, 410, 413, 429),
    operation_id="completeClaim",
)


_AUDIT_REFUSALS = (400, 401, 404)
AUDIT_TIMELINE_DOC = documented(
    answers={200: ok(AuditTimeline, "A page of the subject's events (`next_after` for more)")},
    refusals=_AUDIT_REFUSALS,
    security=ADMIN,
)
AUDIT_STATE_DOC = documented(
    answers={200: ok({"type": "object"}, "The subject's state at the bound, and who could act")},
    refusals=_AUDIT_REFUSALS,
    security=ADMIN,
)
AUDIT_EXPORT_DOC = documented(
    answers={
        200: ok(
            {"application/jsonl": {"type": "string", "description": "JSON Lines"}},
            "The subject's events with the proof (hash chain, signed checkpoint)",
        )
    },
    refusals=_AUDIT_REFUSALS,
    security=ADMIN,
)
AUDIT_VERIFY_DOC = documented(
    answers={200: ok(ChainReport, "The chain and its checkpoints, and the first break")},
    refusals=(401,),
    security=OPERATOR,
)

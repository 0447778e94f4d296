"""The OpenAPI declarations of the v0.6 door's routes (V1, V2, V6/V7, V8), beside route_docs.py's v1
ones: their bodies as the contract has them, their answers, and refusals in each route
family's own shape (service/http/envelopes.py). V1 and V2 list both profiles' bodies: the
main profile's flat ones and the AuthKit profile's nested ones (service/http/authkit_answers.py;
a tenant answers in the one its `V06_PROFILE` names), and V1's `refresh` type, which only
an AuthKit tenant accepts."""

from __future__ import annotations

from typing import Any

from litestar.openapi.spec import Link

from service.http.answers import (
    COMPACT_JWT,
    AnonymousIdentity,
    AssertedIdentity,
    ClaimAttemptOpened,
    ClaimGrantIssued,
    IdentityError,
    OAuthError,
    ServiceAuthIdentity,
    StepUpRequired,
)
from service.http.answers import TokenIssued as TokenIssuedAnswer
from service.http.authkit_answers import (
    AnonymousNested,
    AssertedNested,
    AttemptOpenedNested,
    Refreshed,
    ServiceAuthNested,
    StepUpNested,
)
from service.http.bodies import Token
from service.http.openapi import FORM, documented, json_body, link_body, ok, one_of, schema_dict
from service.http.route_docs import EMAIL
from service.tenancy.config import CLAIM_GRANT, ID_JAG, JWT_BEARER

MAX_ASSERTION = 8192  # service.crypto.assertions.MAX_ASSERTION_BYTES; an ID-JAG's cap too
MAX_TOKEN = 8192  # a presented token at V8
ASSERTION: dict[str, Any] = COMPACT_JWT | {
    "maxLength": MAX_ASSERTION,
    "description": "a compact JWS: the service's identity assertion, or an ID-JAG",
}
# An absolute URL without a fragment (RFC 8707 2); service.http.oauth checks the same.
RESOURCE_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s#/?]+[^\s#]*$"


def _may_be_blank(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional form parameter: sent without a value (empty, or a null the client encodes
    so) it counts as omitted (RFC 6749 3.1, service.http.bodies.read_form)."""
    return {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 0}, schema]}


def _identity(kind: str, **properties: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"type": {"const": kind}, **properties}
    return {
        "type": "object",
        "properties": fields,
        "required": list(fields),
        "additionalProperties": False,
    }


def _form_link(operation_id: str, grant_type: str | None = None, **fields: str) -> Link:
    """The next form's fields from this answer (`name=json pointer`), and a fixed grant."""
    body: dict[str, str] = {} if grant_type is None else {"grant_type": grant_type}
    body |= {name: f"$response.body#/{pointer}" for name, pointer in fields.items()}
    return Link(operation_id=operation_id, request_body=body)


# Where an answer leads (the fuzzer's stateful phase follows these): the assertion to V6, the
# claim token to V2 and to V7's poll, the access token to V8; in the AuthKit profile the
# nested assertion to V6, the claim token to V2, the refresh token to V1. None leads to
# complete: a main-profile tenant answers it 404 (the fuzzer's check that what a POST made
# is found would fail), and without the person's code it could only answer 409.
NESTED_EXCHANGE = _form_link("exchangeAssertion", JWT_BEARER, assertion="identity/assertion")
REFRESH_LINK = Link(
    operation_id="identify",
    request_body={
        "type": "refresh",
        "refresh_token": "$response.body#/identity/refresh_token/value",
    },
)
IDENTITY_LINKS = {
    "exchange": _form_link("exchangeAssertion", JWT_BEARER, assertion="identity_assertion"),
    "start_claim": link_body("startClaimV06", claim_token="claim_token"),  # noqa: S106
    "poll": _form_link("exchangeAssertion", CLAIM_GRANT, claim_token="claim_token"),  # noqa: S106
    "exchange_nested": NESTED_EXCHANGE,
    "start_claim_nested": link_body("startClaimV06", claim_token="claim/token"),  # noqa: S106
    "refresh": REFRESH_LINK,
}
REFRESH_KIND = _identity("refresh", refresh_token=schema_dict(Token))
REFRESH_KIND["description"] = "AuthKit profile only (elsewhere 400 `invalid_request`)"
IDENTITY_BODY: dict[str, Any] = {
    "title": "IdentityBody",
    "oneOf": [
        _identity("anonymous"),
        _identity("service_auth", login_hint=EMAIL),
        _identity("identity_assertion", assertion_type={"const": ID_JAG}, assertion=ASSERTION),
        REFRESH_KIND,
    ],
}
IDENTITY_DOC = documented(
    body=json_body(IDENTITY_BODY),
    answers={
        200: ok(
            one_of(
                AnonymousIdentity,
                ServiceAuthIdentity,
                AssertedIdentity,
                AnonymousNested,
                ServiceAuthNested,
                AssertedNested,
                Refreshed,
            ),
            "Registered (V1). anonymous: an identity assertion to exchange at the token "
            "endpoint, and the claim token. service_auth: the claim token and the attempt "
            "(`claim`: the code for the person, `verification_uri`, the poll `interval`), no "
            "assertion before the claim. identity_assertion (an ID-JAG of a known or new "
            "subject): its deterministic id and an identity assertion. A tenant in the AuthKit "
            "profile answers the same nested (`id`, `type`, `identity{assertion, expires_at}`, "
            "`scopes`, `claim{token, expires_at, url, attempt{verification_uri, expires_at}}`; "
            "no code reaches the agent: the person reads it off the confirm page), and `refresh` "
            "with the next refresh token (the presented one dies; 400 `invalid_refresh_token` "
            "for one not live, and one used twice ends them all). (The links' fields are "
            "absent from the answers that lack them: no assertion before a service_auth claim, "
            "no claim token for an ID-JAG; the flat and nested names are each one profile's.)",
            **IDENTITY_LINKS,
        ),
        401: ok(
            one_of(StepUpRequired, StepUpNested),
            "An ID-JAG that needs a person first: `interaction_required` (the account's owner must "
            "sign in and type `claim.user_code`; the ceremony is open; in the AuthKit profile "
            "the handles nest and the owner presses Authorize at `claim.attempt`'s page and "
            "reads the code to the agent, which completes the claim) or `login_required` "
            "(`auth_time` older than `max_age` seconds: sign the user in again)",
            **{n: IDENTITY_LINKS[n] for n in ("start_claim", "start_claim_nested")},
        ),
    },
    refusals=(400, 404, 413, 429),
    operation_id="identify",
    error_body=IdentityError,
)
CLAIM_ATTEMPT_BODY: dict[str, Any] = {
    "title": "ClaimBody",
    "type": "object",
    "properties": {
        "claim_token": {"type": "string", "minLength": 1, "maxLength": 256,
                        "pattern": "^[A-Za-z0-9._~-]+$"},
        "email": EMAIL,
        "login_hint": EMAIL,
        "type": {"type": "string", "enum": ["login_hint", "service_auth", "email"]},
    },
    "required": ["claim_token"],
    "oneOf": [{"required": ["email"]}, {"required": ["login_hint"]}],  # exactly one (O-P)
    "additionalProperties": False,
}  # fmt: skip
IDENTITY_CLAIM_DOC = documented(
    body=json_body(CLAIM_ATTEMPT_BODY),
    answers={
        200: ok(
            one_of(ClaimAttemptOpened, AttemptOpenedNested),
            "A new claim attempt (V2): the code for the person and where they go; the "
            "previous attempt's link and code are dead. Poll the claim grant for the outcome. "
            "AuthKit profile: `{id, type, attempt{verification_uri, expires_at}}`, no code: the "
            "person presses Authorize there and reads the code to the agent, which completes "
            "the claim; a claimed registration is 409 `already_claimed`.",
        )
    },
    refusals=(400, 401, 404, 409, 410, 413, 429),
    operation_id="startClaimV06",
    error_body=IdentityError,
)
TOKEN_BODY: dict[str, Any] = {
    FORM: {
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "grant_type": {"type": "string", "enum": [JWT_BEARER]},
                    "assertion": ASSERTION,
                    "resource": _may_be_blank({"type": "string", "maxLength": 2048,
                                               "pattern": RESOURCE_PATTERN}),
                },
                "required": ["grant_type", "assertion"],
            },
            {
                "type": "object",
                "properties": {
                    "grant_type": {"type": "string", "enum": [CLAIM_GRANT]},
                    "claim_token": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN},
                },
                "required": ["grant_type", "claim_token"],
            },
        ],
        # RFC 6749 3.2: the token endpoint ignores parameters it does not know
    }
}  # fmt: skip
TOKEN_DOC = documented(
    body=TOKEN_BODY,
    answers={
        200: ok(
            one_of(TokenIssuedAnswer, ClaimGrantIssued),
            "An access token: for the assertion (V6, RFC 7523), or for a claimed registration's "
            "claim token (V7, polled as RFC 8628: 400 `authorization_pending`, `slow_down`, "
            "`access_denied`, `expired_token`, `invalid_grant` until then), with an assertion",
            revoke=_form_link("revokeToken", token="access_token"),  # noqa: S106
        )
    },
    refusals=(400, 404, 413, 429),
    operation_id="exchangeAssertion",
    error_body=OAuthError,
)
REVOKE_TOKEN_BODY: dict[str, Any] = {
    FORM: {
        "type": "object",
        "properties": {
            "token": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN},
            "token_type_hint": _may_be_blank({"type": "string", "minLength": 1}),
        },
        "required": ["token"],
    }
}
REVOKE_TOKEN_DOC = documented(
    body=REVOKE_TOKEN_BODY,
    answers={
        200: ok(
            {"text/plain": {"type": "string", "maxLength": 0}},
            "Done, whether or not the token was a live one of this service (V8, RFC 7009)",
        )
    },
    refusals=(400, 404, 413, 429),
    operation_id="revokeToken",
    error_body=OAuthError,
)

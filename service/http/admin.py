"""The operator's API under /admin, behind scoped credentials (service/http/access.py): an
operator credential, or a tenant admin credential on its own tenant's hosts.

- `POST /admin/trusted-issuers` trusts an agent provider (or changes its terms), `GET` lists
  the trust list, `DELETE /admin/trusted-issuers?issuer=…` removes one (spec §7, issue 4);
- `POST /admin/revocations` revokes one credential, or every credential of a registration, a
  user or a provider, with a note recorded in each event (O10, incident response).

Every change is an event whose metadata names the actor (`admin:<credential id>`, or
`admin:bootstrap` for the deprecated AUTHLEDGER_ADMIN_TOKEN) and the request id. Bodies are
strict JSON; refusals are `{"error", "message"}` with a 4xx, never a 500.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromQuery

from service.commands.context import Context
from service.commands.erasure import NobodyToErase, erase_person
from service.commands.revocation import Scope, revoke
from service.commands.trust_list import BadEntry, as_json, distrust, listed, requested_entry, trust
from service.domain.access import ADMIN as ADMIN_SCOPES
from service.domain.trust_list import NotTrusted
from service.http.access import AccessGate, AdminRefused, operator_caller
from service.http.answers import Distrusted, Erased, OperatorRevoked, TrustChange, TrustList
from service.http.bodies import BODY_LIMIT, Strict, json_reply, plain_text, read_json, timestamp
from service.http.guarded import admin_documented, guarded_router, settings_of
from service.http.openapi import HTTPS_URL, json_body, link_parameters, ok, refined
from service.providers.trust import ALGORITHMS
from service.settings import Settings

AnyRequest = Request[Any, Any, Any]
ISSUERS_PATH = "/admin/trusted-issuers"
REVOCATIONS_PATH = "/admin/revocations"
ERASURES_PATH = "/admin/erasures"
Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2048)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Note = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class IssuerBody(Strict, frozen=True):
    issuer: Url
    jwks_uri: Url | None = None
    algorithms: Annotated[list[Short], msgspec.Meta(min_length=1, max_length=8)] | None = None
    display_name: Name | None = None
    link_by_verified_email: bool = False  # opt-in (security issue 12, finding 2)
    client_ids: Annotated[list[Url], msgspec.Meta(max_length=16)] = []  # noqa: RUF012
    required_amr: Annotated[list[Short], msgspec.Meta(max_length=16)] = []  # noqa: RUF012


class RevocationBody(Strict, frozen=True):
    """Exactly one of the four targets."""

    credential_id: Id | None = None
    registration_id: Id | None = None
    user_id: Id | None = None
    issuer: Url | None = None
    reason: Note | None = None


_DISTRUST = link_parameters("distrustIssuer", issuer="issuer")
TRUST_DOC = admin_documented(
    body=json_body(
        refined(
            IssuerBody,
            issuer=HTTPS_URL,
            jwks_uri=HTTPS_URL,
            client_ids=HTTPS_URL,
            algorithms={"enum": list(ALGORITHMS)},
        )
    ),
    answers={
        201: ok(TrustChange, "Trusted (`outcome: trusted`)", distrust=_DISTRUST),
        200: ok(
            TrustChange,
            "Its terms changed (`updated`) or were these already (`unchanged`)",
            distrust=_DISTRUST,
        ),
    },
    refusals=(400, 401, 413),
    operation_id="trustIssuer",
)
TRUST_LIST_DOC = admin_documented(answers={200: ok(TrustList, "The trust list")}, refusals=(401,))
DISTRUST_DOC = admin_documented(
    answers={200: ok(Distrusted, "Removed from the trust list")},
    refusals=(400, 401, 404),
    operation_id="distrustIssuer",
)
REVOKE_DOC = admin_documented(
    body=json_body(RevocationBody),
    answers={200: ok(OperatorRevoked, "What was revoked (0 when nothing was active)")},
    refusals=(400, 401, 413),
)


@post(ISSUERS_PATH, summary="Trust an agent provider, or change its terms",
      request_max_body_size=BODY_LIMIT, operation_class=TRUST_DOC)  # fmt: skip
async def add_issuer(request: AnyRequest, ctx: NamedDependency[Context]) -> Response[bytes]:
    body = await read_json(request, IssuerBody)
    try:
        entry = requested_entry(
            settings_of(request),
            issuer=body.issuer,
            jwks_uri=body.jwks_uri,
            algorithms=body.algorithms or (),
            display_name=body.display_name,
            link_by_verified_email=body.link_by_verified_email,
            client_ids=body.client_ids,
            required_amr=body.required_amr,
        )
    except BadEntry as exc:
        raise AdminRefused(400, "invalid_request", str(exc)) from None
    change = await trust(ctx, entry, operator_caller(request))
    status = 201 if change.outcome == "trusted" else 200
    return json_reply({**as_json(change.entry), "outcome": change.outcome}, status)


@get(ISSUERS_PATH, summary="The trust list", operation_class=TRUST_LIST_DOC)
async def list_issuers(ctx: NamedDependency[Context]) -> Response[bytes]:
    entries = [
        {**as_json(entry), "version": version, "updated_at": timestamp(at)}
        for entry, version, at in await listed(ctx)
    ]
    return json_reply({"trusted_issuers": entries})


@delete(ISSUERS_PATH, status_code=200, summary="Stop trusting an agent provider",
        operation_class=DISTRUST_DOC)  # fmt: skip
async def remove_issuer(
    request: AnyRequest,
    ctx: NamedDependency[Context],
    issuer: FromQuery[str],
    reason: FromQuery[str | None] = None,
) -> Response[bytes]:
    if not 0 < len(issuer) <= 2048 or (reason is not None and len(reason) > 500):
        raise AdminRefused(400, "invalid_request", "issuer (and reason) too long or empty")
    plain_text(issuer + (reason or ""), "issuer or reason")
    try:
        await distrust(ctx, issuer, operator_caller(request), reason)
    except NotTrusted:
        raise AdminRefused(404, "not_found", "that issuer is not on the trust list") from None
    return json_reply({"issuer": issuer, "outcome": "removed"})


@post(REVOCATIONS_PATH, summary="Revoke a credential, or every one of a registration, user "
      "or provider", request_max_body_size=BODY_LIMIT, operation_class=REVOKE_DOC)  # fmt: skip
async def revoke_credentials(request: AnyRequest, ctx: NamedDependency[Context]) -> Response[bytes]:
    body = await read_json(request, RevocationBody)
    named: tuple[tuple[Scope, str | None], ...] = (
        ("credential", body.credential_id),
        ("registration", body.registration_id),
        ("user", body.user_id),
        ("issuer", body.issuer),
    )
    targets = [(scope, value) for scope, value in named if value is not None]
    if len(targets) != 1:
        raise AdminRefused(
            400,
            "invalid_request",
            "name exactly one of credential_id, registration_id, user_id, issuer",
        )
    scope, target = targets[0]
    revoked = await revoke(ctx, scope, target, operator_caller(request), body.reason)
    return json_reply(
        {
            scope: target,
            "revoked": revoked.count,
            "credential_ids": list(revoked.credential_ids),
            "registration_ids": list(revoked.registration_ids),  # v0.6 ones ended too (O-R)
        }
    )


class ErasureBody(Strict, frozen=True):
    """Exactly one of the two ways to name the person."""

    user_id: Id | None = None
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=254)] | None = None
    reason: Note | None = None


ERASE_DOC = admin_documented(
    body=json_body(ErasureBody),
    answers={200: ok(Erased, "Whose keys were destroyed, and what was revoked")},
    refusals=(400, 401, 404, 413),
)


@post(ERASURES_PATH, summary="Erase a person: destroy the keys of their personal data",
      request_max_body_size=BODY_LIMIT, operation_class=ERASE_DOC)  # fmt: skip
async def erase(request: AnyRequest, ctx: NamedDependency[Context]) -> Response[bytes]:
    body = await read_json(request, ErasureBody)
    if (body.user_id is None) == (body.email is None):
        raise AdminRefused(400, "invalid_request", "name exactly one of user_id and email")
    try:
        erased = await erase_person(
            ctx,
            operator_caller(request),
            user_id=body.user_id,
            email=body.email,
            reason=body.reason,
        )
    except NobodyToErase as exc:
        raise AdminRefused(404, "not_found", str(exc)) from None
    return json_reply(
        {
            "users": list(erased.users),
            "registrations": list(erased.registrations),
            "attempts": list(erased.attempts),
            "sign_in_links": list(erased.sign_in_links),
            "revoked": list(erased.revoked),
        }
    )


def admin_router(settings: Settings, gate: AccessGate, *more: HTTPRouteHandler) -> Router:
    """Every /admin route; `more` are handlers other modules define on the same paths (one
    router per path, or Litestar would register its OPTIONS handler twice)."""
    return guarded_router(
        [add_issuer, list_issuers, remove_issuer, revoke_credentials, erase, *more],
        gate,
        ADMIN_SCOPES,
        tag="admin",
        settings=settings,
    )

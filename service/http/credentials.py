"""Scoped operator credentials under /admin/credentials, for operators only
(service/commands/access.py; the CLI's `authledger access` makes the same events):

- `POST /admin/credentials` grants one: `scope`, `label`, and `tenant_id` (tenant-bound scopes;
  default: the tenant of the request's host) or `client_id` (introspection). The answer shows
  the token once (`Cache-Control: no-store`); only its SHA-256 is kept;
- `GET /admin/credentials[?tenant_id=…][&revoked=true]` lists them, never a token or hash;
- `DELETE /admin/credentials/{credential_id}[?reason=…]` revokes one: refused from then on.

Each grant and revocation is an event whose metadata names the actor (`admin:<credential id>`
or `admin:bootstrap`) and the request id.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from service.commands.access import Listed, grant_access, list_access, revoke_access
from service.commands.context import Context
from service.domain.access import (
    OPERATOR_ONLY,
    TENANT_BOUND,
    AccessRefused,
    NotGranted,
)
from service.http.access import ACCEPTS, AdminRefused, operator_caller
from service.http.answers import Doc, Timestamp
from service.http.bodies import BODY_LIMIT, Strict, json_reply, plain_text, read_json, timestamp
from service.http.openapi import OPERATOR, documented, json_body, link_parameters, ok

PATH = "/admin/credentials"
ONE = PATH + "/{credential_id:str}"
_ID = re.compile(r"acc_[A-Za-z0-9_-]{22}")
ScopeName = Literal["operator", "tenant_admin", "introspection", "metrics", "revocation_feed"]


class GrantBody(Strict, frozen=True):
    scope: ScopeName
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    tenant_id: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class Credential(Doc, frozen=True):
    credential_id: str
    scope: str
    tenant_id: str | None
    client_id: str | None
    label: str
    granted_at: Timestamp
    revoked_at: Timestamp | None


class GrantedCredential(Credential, frozen=True):
    token: Annotated[str, msgspec.Meta(pattern="^ala_")]


class Credentials(Doc, frozen=True):
    credentials: list[Credential]


class RevokedCredential(Doc, frozen=True):
    credential_id: str
    outcome: Literal["revoked", "unchanged"]


_REVOKE_LINK = link_parameters("revokeCredential", credential_id="credential_id")
GRANT_DOC = documented(
    body=json_body(GrantBody),
    answers={
        201: ok(GrantedCredential, "Granted; the token is shown this once", revoke=_REVOKE_LINK)
    },
    refusals=(400, 401, 413),
    security=OPERATOR,
)
LIST_DOC = documented(
    answers={200: ok(Credentials, "Every credential (without tokens)")},
    refusals=(400,),
    security=OPERATOR,
)
REVOKE_DOC = documented(
    answers={200: ok(RevokedCredential, "Revoked now, or revoked already")},
    refusals=(400, 401, 404),
    security=OPERATOR,
    operation_id="revokeCredential",
)
OPERATORS_ONLY = {ACCEPTS: OPERATOR_ONLY}


@post(PATH, summary="Grant a scoped operator credential", request_max_body_size=BODY_LIMIT,
      operation_class=GRANT_DOC, opt=OPERATORS_ONLY)  # fmt: skip
async def grant(request: Request[Any, Any, Any], ctx: NamedDependency[Context]) -> Response[bytes]:
    body = await read_json(request, GrantBody)
    plain_text(body.label, "label")
    tenant_id = body.tenant_id
    if tenant_id is None and body.scope in TENANT_BOUND:
        tenant_id = ctx.tenant.tenant_id  # the tenant of the host it was asked on
    try:
        granted = await grant_access(ctx, operator_caller(request), scope=body.scope,
                                     label=body.label, tenant_id=tenant_id,
                                     client_id=body.client_id)  # fmt: skip
    except AccessRefused as exc:
        raise AdminRefused(400, "invalid_request", str(exc)) from None
    access = granted.access
    answer = {
        "credential_id": access.credential_id,
        "scope": access.scope,
        "tenant_id": access.tenant_id,
        "client_id": access.client_id,
        "label": access.label,
        "granted_at": timestamp(granted.granted_at),
        "revoked_at": None,
        "token": granted.token,
    }
    return json_reply(answer, 201)


@get(PATH, summary="Scoped operator credentials", operation_class=LIST_DOC, opt=OPERATORS_ONLY)
async def list_credentials(
    ctx: NamedDependency[Context],
    tenant_id: FromQuery[str | None] = None,
    revoked: FromQuery[bool] = False,
) -> Response[bytes]:
    if tenant_id is not None and not 0 < len(plain_text(tenant_id, "tenant_id")) <= 32:
        raise AdminRefused(400, "invalid_request", "tenant_id: 1 to 32 characters")
    found = await list_access(ctx, tenant_id=tenant_id, with_revoked=revoked)
    return json_reply({"credentials": [_shown(entry) for entry in found]})


@delete(ONE, status_code=200, summary="Revoke a scoped operator credential",
        operation_class=REVOKE_DOC, opt=OPERATORS_ONLY)  # fmt: skip
async def revoke(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[Context],
    credential_id: FromPath[str],
    reason: FromQuery[str | None] = None,
) -> Response[bytes]:
    if not _ID.fullmatch(credential_id):
        raise AdminRefused(400, "invalid_request", "credential_id: acc_ and 22 characters")
    if reason is not None and not 0 < len(reason) <= 500:
        raise AdminRefused(400, "invalid_request", "reason: 1 to 500 characters")
    if reason is not None:
        plain_text(reason, "reason")
    try:
        revoked = await revoke_access(ctx, credential_id, operator_caller(request), reason)
    except NotGranted:
        raise AdminRefused(404, "not_found", "no such credential") from None
    outcome = "revoked" if revoked else "unchanged"
    return json_reply({"credential_id": credential_id, "outcome": outcome})


def _shown(entry: Listed) -> dict[str, Any]:
    return {
        "credential_id": entry.credential_id,
        "scope": entry.scope,
        "tenant_id": entry.tenant_id,
        "client_id": entry.client_id,
        "label": entry.label,
        "granted_at": timestamp(entry.granted_at),
        "revoked_at": timestamp(entry.revoked_at) if entry.revoked_at else None,
        "revoke_reason": entry.revoke_reason,
    }


HANDLERS = (grant, list_credentials, revoke)

"""Who may call the operator's routes: scoped credentials, checked by one guard.

Every guarded route names the scopes it accepts besides `operator` (router or handler `opt`
under ACCEPTS; service/domain/access.py has the sets and the rule). The guard reads the
credential (`Authorization: Bearer <token>`; at introspection also RFC 7662 §2.1 HTTP Basic
`client_id:token`), finds it by its SHA-256 (service/caches/access.py), and applies `judge` with
the request's tenant (the one its `Host` resolved to):

- no credential, an unknown one, a revoked one: 401 `unauthorized` with `WWW-Authenticate`;
- a live credential of another scope: 403 `insufficient_scope`;
- a tenant-bound credential on another tenant's host: 403 `wrong_tenant`.

`AUTHLEDGER_ADMIN_TOKEN`, when set, is the deprecated bootstrap: an operator credential
compared in constant time, recorded as the actor `admin:bootstrap`. The admitted `Holder` is
kept in the connection's state, so the changes a route makes name it as their actor.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import asyncpg
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler

from service.caches.access import BOOTSTRAP, AccessCache, Holder
from service.commands.context import Caller
from service.crypto.tokens import tokens_equal
from service.domain.access import ADMIN, judge
from service.http.bodies import caller, json_reply
from service.http.tenancy import TENANT_STATE
from service.observability.request_outcome import note_refusal
from service.tenancy.config import TenantConfig

ACCESS_GATE = "access_gate"  # router opt key of the AccessGate
ACCEPTS = "accepts"  # router or handler opt key: the scopes that pass besides operator
HOLDER = "access_holder"  # connection state key of the admitted Holder
BASIC_CHALLENGE = 'Basic realm="authledger"'
AnyConnection = ASGIConnection[Any, Any, Any, Any]


class AdminRefused(HTTPException):
    def __init__(
        self, status: int, error: str, message: str, challenge: str | None = "Bearer"
    ) -> None:
        super().__init__(detail=message, status_code=status)
        self.error = error
        self.headers = {"WWW-Authenticate": challenge} if status == 401 and challenge else {}


def admin_refused(_: Request[Any, Any, Any], exc: AdminRefused) -> Response[bytes]:
    note_refusal(exc.error)
    return json_reply({"error": exc.error, "message": exc.detail}, exc.status_code, exc.headers)


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header (scheme in any case);
    "" for a Bearer header without one, None when no bearer credential was sent at all."""
    scheme, _, credential = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    credential = credential.strip()
    return credential if credential and " " not in credential else ""


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(client_id, secret) of an `Authorization: Basic …` header, each form-decoded as RFC 6749
    §2.3.1 asks; ("", "") for a malformed one, None when the scheme is not Basic."""
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    user, sep, secret = decoded.partition(":")
    if not sep:
        return "", ""
    return unquote_plus(user), unquote_plus(secret)


@dataclass(frozen=True)
class AccessGate:
    bootstrap: str | None  # AUTHLEDGER_ADMIN_TOKEN (deprecated), an operator credential
    cache: AccessCache
    default_tenant: TenantConfig

    def __deepcopy__(self, memo: dict[int, object]) -> AccessGate:
        return self  # Litestar deep-copies router opts; the cache and its pool are shared

    async def admit(
        self, connection: AnyConnection, accepts: frozenset[str], *, basic: bool = False
    ) -> Holder:
        """The holder of a credential `judge` lets through here, else AdminRefused.
        `basic`: HTTP Basic client authentication is accepted too (introspection)."""
        header = connection.headers.get("authorization")
        token = bearer_token(header)
        client = basic_credentials(header) if basic and token is None else None
        holder: Holder | None = None
        if token:
            holder = await self._holder(token)
        elif client is not None and client[0] and client[1]:
            found = await self.cache.holder(client[1])
            holder = found if found is not None and found.client_id == client[0] else None
        if holder is None:
            raise _unauthorized(token, client, precise=basic)
        tenant = connection.scope.get("state", {}).get(TENANT_STATE, self.default_tenant)
        verdict = judge(holder.scope, holder.tenant_id, accepts, tenant.tenant_id)
        if verdict == "wrong_scope":
            raise AdminRefused(
                403, "insufficient_scope", f"a {holder.scope} credential cannot use this route"
            )
        if verdict == "wrong_tenant":
            raise AdminRefused(403, "wrong_tenant", "this credential acts in another tenant")
        connection.state[HOLDER] = holder
        return holder

    async def holds(self, connection: AnyConnection, accepts: frozenset[str]) -> bool:
        """Whether the request carries a credential `judge` admits here; refuses nothing (for
        routes that answer everyone, and say more to a credential: `/readyz`)."""
        try:
            await self.admit(connection, accepts)
        except AdminRefused:
            return False
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return False  # the database cannot say (unmigrated, down): the short answer
        return True

    async def _holder(self, token: str) -> Holder | None:
        if self.bootstrap and tokens_equal(token, self.bootstrap):
            return BOOTSTRAP
        return await self.cache.holder(token)


def _unauthorized(
    token: str | None, client: tuple[str, str] | None, *, precise: bool
) -> AdminRefused:
    if client is not None:
        return AdminRefused(401, "unauthorized", "unknown client or secret", BASIC_CHALLENGE)
    if token is None:
        return AdminRefused(401, "unauthorized", "this route needs a credential (Bearer)")
    challenge = 'Bearer error="invalid_token"' if precise else "Bearer"
    message = "the credential is not recognised, or has been revoked"
    return AdminRefused(401, "unauthorized", message, challenge)


async def access_guard(connection: AnyConnection, handler: BaseRouteHandler) -> None:
    """The guard of every operator route: admits the scopes in the handler's ACCEPTS."""
    gate: AccessGate = handler.opt[ACCESS_GATE]
    await gate.admit(connection, handler.opt.get(ACCEPTS, ADMIN))


def operator_caller(request: Request[Any, Any, Any]) -> Caller:
    """The Caller of an admitted request: its request id, and its credential as the actor."""
    holder = request.state.get(HOLDER)
    actor = holder.actor if isinstance(holder, Holder) else "admin"
    return Caller(request_id=caller(request).request_id, actor=actor)

"""Request bodies in, JSON bodies out: the wire format of E4, E5, E7 and E8.

A body is read raw, capped at BODY_LIMIT bytes (413 past it), checked to be UTF-8 JSON and
decoded by msgspec into a strict Struct that refuses unknown fields; anything wrong becomes
`invalid_request` (spec §9, O19, W14) before a command runs, so a bad request writes nothing.
Validation messages name the field, never the value sent.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs

import msgspec
import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import Scope

from events.instants import utc_millis
from service.commands.context import Caller
from service.domain.errors import ProtocolError
from service.http.client_address import FORWARDED_FOR, TRUSTED_PROXIES, Network, client_address
from service.tenancy.config import TenantConfig

T = TypeVar("T", bound=msgspec.Struct)
BODY_LIMIT = 16 * 1024  # every body of this dialect fits in a few hundred bytes
POSITION_MAX = 2**63 - 1  # a log position is a Postgres bigint: past it, a query fails (500)
FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# A `\u0000` escape that is not itself escaped: Postgres text (and json's ->>) holds no NUL.
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_FORWARDED_FOR = FORWARDED_FOR.encode()
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")

Token = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9._~-]+\Z")]
Otp = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}\Z")]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
Word = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Assertion = Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]


class Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A request body: exactly these fields, of exactly these types."""


class RegisterBody(Strict, frozen=True):
    """E4."""

    type: Word
    requested_credential_type: Word
    assertion_type: Word | None = None
    assertion: Assertion | None = None


class StartClaimBody(Strict, frozen=True):
    """E5."""

    claim_token: Token
    email: Email


class ChallengeBody(Strict, frozen=True):
    """E7, called with JSON."""

    claim_attempt_token: Token


class CompleteBody(Strict, frozen=True):
    """E8."""

    claim_token: Token
    otp: Otp


class BodyTooLarge(Exception):
    """The body is longer than the route accepts (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body exceeds {limit} bytes")
        self.limit = limit


async def read_raw(request: Request[Any, Any, Any], limit: int = BODY_LIMIT) -> bytes:
    """The whole body, refused past `limit` bytes (announced or actually sent)."""
    try:
        raw = await request.body()
    except RequestEntityTooLarge:
        raise BodyTooLarge(limit) from None
    if len(raw) > limit:
        raise BodyTooLarge(limit)
    return raw


def media_type(request: Request[Any, Any, Any]) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_json(request: Request[Any, Any, Any], kind: type[T]) -> T:
    """A JSON body decoded into `kind`; ProtocolError `invalid_request` when it is not one."""
    media = media_type(request)
    if media != MediaType.JSON and not media.endswith("+json"):
        raise ProtocolError("invalid_request", "send the body as application/json")
    return decode_json(await read_raw(request), kind)


def decode_json(raw: bytes, kind: type[T]) -> T:
    """A whole body (already read, within its limit) decoded into `kind`, with read_json's
    checks; service.http.hot_routes reads bodies without a Request."""
    _check_utf8(raw)
    if not raw.strip():
        raise ProtocolError("invalid_request", "the body is empty; a JSON object is required")
    # it would fail in Postgres, after the checks: a 500 (found by fuzzing). The look-behind
    # costs the regex about 30 ns a byte, 25 µs on an ID-JAG's body; the plain search for
    # its six bytes, which every match holds, is a memchr (issue 11, docs/benchmarks.md).
    if b"\\u0000" in raw and _NUL.search(raw):
        raise ProtocolError("invalid_request", "the body holds a NUL character")
    try:
        return msgspec.json.decode(raw, type=kind, strict=True)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid_request", str(exc)) from None
    except msgspec.DecodeError:
        raise ProtocolError("invalid_request", "the body is not valid JSON") from None


async def read_form_token(request: Request[Any, Any, Any], field: str) -> str:
    """One token field of an urlencoded form (the claim page's button)."""
    fields = await _form(request, max_fields=4)
    values = fields.get(field, [])
    if len(values) != 1 or set(fields) != {field}:
        raise ProtocolError("invalid_request", f"the form must hold exactly one {field}")
    try:
        return msgspec.convert(values[0], Token)
    except msgspec.ValidationError:
        raise ProtocolError("invalid_request", f"{field} is malformed") from None


LOGOUT_JWT = "application/logout+jwt"
_COMPACT_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


async def read_logout_token(request: Request[Any, Any, Any]) -> str:
    """E9's body: a compact JWT sent as `application/logout+jwt` (spec §8), or the OpenID
    Back-Channel Logout form with one `logout_token` field ([OURS])."""
    media = media_type(request)
    if media == FORM:
        fields = await _form(request, max_fields=2)
        values = fields.get("logout_token", [])
        if len(values) != 1 or set(fields) != {"logout_token"}:
            raise ProtocolError("invalid_request", "the form must hold exactly one logout_token")
        token = values[0].strip()
    elif media == LOGOUT_JWT:
        raw = await read_raw(request)
        _check_utf8(raw)
        token = raw.decode().strip()
    else:
        raise ProtocolError("invalid_request", f"send the logout token as {LOGOUT_JWT}")
    if not _COMPACT_JWT.fullmatch(token):
        raise ProtocolError("invalid_request", "the body is not a compact JWT")
    return token


async def read_form(request: Request[Any, Any, Any], max_fields: int = 16) -> dict[str, str]:
    """An urlencoded form by RFC 6749 3.2's rules (the token and revocation endpoints): that
    media type, UTF-8 throughout (percent-escapes too), every parameter at most once, one
    sent without a value as if absent, no NUL; `invalid_request` otherwise. Unknown
    parameters are the caller's to ignore."""
    if media_type(request) != FORM:
        raise ProtocolError("invalid_request", f"send the body as {FORM}")
    raw = await read_raw(request)
    _check_utf8(raw)
    try:
        fields = parse_qs(
            raw.decode(), strict_parsing=True, max_num_fields=max_fields, errors="strict"
        )
    except ValueError:  # UnicodeDecodeError too
        raise ProtocolError("invalid_request", "the form is malformed") from None
    repeated = sorted(name for name, values in fields.items() if len(values) > 1)
    if repeated:
        raise ProtocolError("invalid_request", "a parameter is sent more than once")
    form = {name: values[0] for name, values in fields.items()}
    for name, value in form.items():
        plain_text(name + value, "a parameter")
    return form


async def _form(request: Request[Any, Any, Any], max_fields: int) -> dict[str, list[str]]:
    raw = await read_raw(request)
    _check_utf8(raw)
    try:
        return parse_qs(raw.decode(), strict_parsing=True, max_num_fields=max_fields)
    except ValueError:
        raise ProtocolError("invalid_request", "the form is malformed") from None


def plain_text(value: str, field: str) -> str:
    """A parameter that is stored or looked up as text: no NUL character (Postgres refuses
    it, which would be a 500)."""
    if "\x00" in value:
        raise ProtocolError("invalid_request", f"{field} holds a NUL character")
    return value


def check_email(value: str, field: str) -> str:
    """A plain `local@domain.tld` address (no display names, comments or IP literals)."""
    if not _EMAIL.fullmatch(value) or ".." in value:
        raise ProtocolError("invalid_request", f"{field} must be an email address")
    return value


def _check_utf8(raw: bytes) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid_request", "the body is not valid UTF-8") from None


def caller(
    request: Request[Any, Any, Any], *, door: str | None = None, dialect: str | None = None
) -> Caller:
    """The request id bound by the app's middleware and the client's address, if known: the
    peer's, or the forwarded one when the peer is a trusted proxy (service.http.client_address);
    the door and dialect the route speaks, when it is one of an agent door's."""
    proxies: tuple[Network, ...] = request.app.state.get(TRUSTED_PROXIES, ())
    return scope_caller(request.scope, proxies, door=door, dialect=dialect)


def scope_caller(
    scope: Scope, proxies: tuple[Network, ...], *, door: str | None, dialect: str | None
) -> Caller:
    """`caller` from the ASGI scope itself (service.http.hot_routes has no Request)."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    client = scope.get("client")
    # Without trusted proxies no header is read: building the request's headers is a cost of
    # its own on the registration path (issue 11).
    forwarded = (
        [v.decode("latin-1") for k, v in scope["headers"] if k == _FORWARDED_FOR] if proxies else ()
    )
    return Caller(
        request_id=request_id if isinstance(request_id, str) else None,
        client_ip=client_address(client[0] if client else None, forwarded, proxies),
        door=door,
        dialect=dialect,
    )


V1_DOOR = "v1"
V1_DIALECT = "0.1.0"  # auth.md as first published: the /agent/auth dialect


def v1_caller(request: Request[Any, Any, Any]) -> Caller:
    """`caller` for the v1 door's routes (`/agent/auth…` and its claim page): the events they
    cause record door `v1`, dialect `0.1.0`."""
    return caller(request, door=V1_DOOR, dialect=V1_DIALECT)


V06_DOOR = "v06"
V06_DIALECT = "0.6.0"  # auth.md 0.6.0: the /agent/identity dialect, its main profile
AUTHKIT_DIALECT = "0.6.0+authkit"  # its AuthKit production profile (contract [PR28])


def v06_caller(request: Request[Any, Any, Any]) -> Caller:
    """`caller` for the v0.6 door's routes: the events they cause record door `v06`, dialect
    `0.6.0`, or `0.6.0+authkit` for a tenant of the AuthKit profile (the tenant middleware's
    TenantConfig in the scope's state)."""
    # "tenant": service.http.tenancy's TENANT_STATE (which imports this module's callers)
    tenant = request.scope.get("state", {}).get("tenant")
    authkit = isinstance(tenant, TenantConfig) and tenant.v06_profile == "authkit"
    return caller(request, door=V06_DOOR, dialect=AUTHKIT_DIALECT if authkit else V06_DIALECT)


def timestamp(instant: datetime) -> str:
    """ISO 8601 UTC with milliseconds: `2026-07-01T09:30:00.000Z` (spec §1)."""
    return utc_millis(instant)


def json_reply(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    """A JSON answer that no cache keeps: most carry a credential or a token."""
    return Response(
        msgspec.json.encode(body),
        status_code=status,
        media_type=MediaType.JSON,
        headers={**NO_STORE, **(headers or {})},
    )

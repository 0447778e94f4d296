"""Reading a provider's compact JWS, and the claim readers every check of its claims shares.

The token is read by hand (strict base64url, UTF-8 JSON objects, duplicate members and NaN
refused) rather than through a JWT library, so that the error is always the one of the check
that failed, never inferred from a library's message. A header that is not well formed (no
`alg` string, no `kid`, a `crit` member) is `invalid_request`; a well-formed `alg` outside
ALGORITHMS (`none`, `HS256`, ...) is `invalid_signature`. Strings handed on (iss, kid, sub,
jti, ...) must be valid UTF-8 text without NUL, as they end up in Postgres and in logs; times
must be NumericDates in [1970, 3000), a JSON null counting as absent.

The judges of the claims: claims.py (ID-JAGs, logout tokens), id_token.py (an OIDC provider's
ID token at sign-in), set_claims.py (Security Event Tokens at V9).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from service.domain.errors import ProtocolError
from service.providers.trust import ALGORITHMS

MAX_TOKEN_BYTES = 8 * 1024
LATEST_NUMERIC_DATE = 32_503_680_000  # 3000-01-01T00:00:00Z
CodeT = TypeVar("CodeT", bound=str)


class Refusal(Exception, Generic[CodeT]):
    """A token refused by a check outside the ProtocolError codes; `code` names the error or
    the failed check, the message says why (never the token itself)."""

    def __init__(self, code: CodeT, message: str) -> None:
        super().__init__(message)
        self.code: CodeT = code
        self.message = message


_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class Jws:
    """A compact JWS whose header passed the checks; the signature is not checked yet."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def kid(self) -> str:
        return str(self.header["kid"])


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("duplicate member")
    return members


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# One decoder for every token: `json.loads` with hooks builds a new one per call.
_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_no_constants)


def _json_object(segment: str, part: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = _STRICT_JSON.decode(raw.decode("utf-8"))
    except (ValueError, binascii.Error, RecursionError):
        raise ProtocolError("invalid_request", f"the JWT {part} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError("invalid_request", f"the JWT {part} is not a JSON object")
    return value


def is_text(value: object) -> bool:
    """A non-empty string that is valid UTF-8 and free of NUL (storable, loggable)."""
    if not isinstance(value, str) or not value or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_jws(token: str, *, typ: str | None) -> Jws:
    """Split and decode a compact JWS and check its header (not the signature): its `typ` must
    be `typ` (any case, `application/` tolerated) unless `typ` is None (an OIDC ID token names
    none, or `JWT`; a SET's typ is judged by its own check)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        raise ProtocolError(
            "invalid_request", f"the JWT is not a string of at most {MAX_TOKEN_BYTES} characters"
        )
    segments = token.split(".")
    # an empty signature passes here, so that `alg: none` is refused for its alg
    if (
        len(segments) != 3
        or not all(_SEGMENT.fullmatch(s) for s in segments)
        or not (segments[0] and segments[1])
    ):
        raise ProtocolError("invalid_request", "the JWT is not a compact JWS")
    header = _json_object(segments[0], "header")
    payload = _json_object(segments[1], "payload")
    try:
        signature = base64.urlsafe_b64decode(segments[2] + "=" * (-len(segments[2]) % 4))
    except (ValueError, binascii.Error):
        raise ProtocolError("invalid_request", "the JWT signature is not base64url") from None
    _check_header(header, typ)
    signing_input = f"{segments[0]}.{segments[1]}".encode("ascii")
    return Jws(header=header, payload=payload, signing_input=signing_input, signature=signature)


def type_is(header: dict[str, Any], typ: str) -> bool:
    """Whether the header's `typ` is `typ`, in any case, with or without `application/`."""
    declared = header.get("typ")
    return isinstance(declared, str) and declared.lower().removeprefix("application/") == typ


def _check_header(header: dict[str, Any], typ: str | None) -> None:
    if typ is not None and not type_is(header, typ):
        raise ProtocolError("invalid_request", f"the JWT typ is not {typ}")
    if "crit" in header:
        raise ProtocolError(
            "invalid_request", "the JWT header has crit extensions we do not support"
        )
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise ProtocolError("invalid_request", "the JWT header has no alg")
    if alg not in ALGORITHMS:
        raise ProtocolError("invalid_signature", "the JWT alg is not one we accept")
    if not is_text(header.get("kid")):
        raise ProtocolError("invalid_request", "the JWT header has no kid")


def issuer_of(payload: dict[str, Any]) -> str:
    """The unverified `iss`, to pick the trust entry and keys with."""
    iss = payload.get("iss")
    if not is_text(iss):
        raise ProtocolError("invalid_issuer", "the JWT has no iss")
    return str(iss)


def same_url(value: object, expected: str) -> bool:
    return isinstance(value, str) and value.removesuffix("/") == expected.removesuffix("/")


def audience_ok(aud: object, audience: str) -> bool:
    if isinstance(aud, list):
        return any(same_url(item, audience) for item in aud)
    return same_url(aud, audience)


def numeric_date(payload: dict[str, Any], name: str) -> float | None:
    """A time claim, bounded to [1970, 3000) so every sum and conversion below stays exact."""
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError("invalid_request", f"{name} is not a number")
    if not 0 <= value < LATEST_NUMERIC_DATE:  # NaN fails this too
        raise ProtocolError("invalid_request", f"{name} is out of range")
    return value


def instant(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def text(payload: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if not is_text(value):
        raise ProtocolError("invalid_request", f"{name} is not a non-empty string")
    return str(value)

"""Verifying what an agent provider sends us: ID-JAGs (spec §7.3), logout tokens (§8) and
Security Event Tokens (contract V9, `verify_set`).

The pure checks live in claims.py; this module adds the two steps that need I/O, in an order
that keeps an untrusted party from making us fetch anything: the unverified `iss` must name a
trusted issuer before any key is looked up, and the keys come only from that issuer's entry.
A key that cannot be had (unknown kid after the refetch, JWKS unreachable, too big, not https)
is `invalid_signature`, as is an `alg` the issuer's entry does not allow.

Neither function checks replay: the caller inserts `(iss, jti)` into the shared store, kept
until `remember_until`, after these checks pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.domain.errors import ProtocolError
from service.providers.claims import ID_JAG_TYPE, LOGOUT_TYPE, check_id_jag, check_logout
from service.providers.jwks import KeySource, KeyUnavailable
from service.providers.jwt_parts import Jws, issuer_of, read_jws
from service.providers.set_claims import SetRefused, VerifiedSet, check_set, read_set
from service.providers.trust import TrustedIssuer, TrustLookup, VerifiedAssertion, VerifiedLogout


def read_id_jag(token: str) -> Jws:
    """An ID-JAG's parts, its header checked, nothing else (its claims are unverified)."""
    return read_jws(token, typ=ID_JAG_TYPE)


async def verify_id_jag(
    token: str | Jws,
    *,
    trust: TrustLookup,
    keys: KeySource,
    audience: str,
    resource: str,
    now: datetime,
    resource_audience: bool = False,
) -> VerifiedAssertion:
    """The claims of a valid ID-JAG; ProtocolError with the §7.3 code of the first failed check.

    `token` as sent, or as `read_id_jag` read it; `audience` is our authorization server's
    issuer, `resource` the API's PRM `resource`; with `resource_audience` (the v0.6 door, O-D)
    an `aud` naming the resource is accepted.
    """
    jws = read_id_jag(token) if isinstance(token, str) else token
    issuer = await _trusted_issuer(jws, trust)
    await _check_signature(jws, issuer, keys)
    return check_id_jag(
        jws.payload,
        issuer=issuer,
        audience=audience,
        resource=resource,
        now=now,
        key_id=jws.kid,
        algorithm=jws.alg,
        resource_audience=resource_audience,
    )


async def verify_logout_token(
    token: str,
    *,
    trust: TrustLookup,
    keys: KeySource,
    audience: str,
    events_supported: Sequence[str],
    now: datetime,
) -> VerifiedLogout:
    """The claims of a valid logout token; ProtocolError with the §8 [OURS] code if not."""
    jws = read_jws(token, typ=LOGOUT_TYPE)
    issuer = await _trusted_issuer(jws, trust)
    await _check_signature(jws, issuer, keys)
    return check_logout(
        jws.payload,
        issuer=issuer,
        audience=audience,
        events_supported=events_supported,
        now=now,
    )


async def verify_set(
    token: str, *, trust: TrustLookup, keys: KeySource, audience: str, now: datetime
) -> VerifiedSet:
    """The claims of a valid SET (all but the replay check); ProtocolError with the events
    family's code of the first failed check: the header (set_claims.read_set), `iss` trusted
    (`invalid_issuer`), alg allowed for the issuer, key and signature (`authentication_failed`),
    then the claims (set_claims.check_set)."""
    try:
        jws = read_set(token)
        issuer = await _trusted_issuer(jws, trust)
        try:
            await _check_signature(jws, issuer, keys)
        except ProtocolError as exc:
            raise SetRefused("authentication_failed", exc.message) from None
        return check_set(jws, issuer=issuer, audience=audience, now=now)
    except SetRefused as refused:
        raise ProtocolError(refused.code, refused.message) from None


async def _trusted_issuer(jws: Jws, trust: TrustLookup) -> TrustedIssuer:
    iss = issuer_of(jws.payload)
    issuer = await trust(iss)
    if issuer is None or issuer.issuer != iss:
        raise ProtocolError("invalid_issuer", "the JWT issuer is not trusted here")
    return issuer


async def _check_signature(jws: Jws, issuer: TrustedIssuer, keys: KeySource) -> None:
    if jws.alg not in issuer.algorithms:
        raise ProtocolError("invalid_signature", "the JWT alg is not allowed for its issuer")
    try:
        key = await keys.key(issuer, jws.kid)
    except KeyUnavailable:
        raise ProtocolError("invalid_signature", "no key of the issuer matches the JWT") from None
    if not key.verify(jws.alg, jws.signing_input, jws.signature):
        raise ProtocolError("invalid_signature", "the JWT signature does not verify")

"""The ID-JAG and logout-token rules of spec §7.3 and §8 [OURS], one test per rule, plus fuzzing
of the JWT intake: whatever arrives, the verifier answers with a ProtocolError or a result.

Keys are read from the test provider's JWKS in memory (PublishedKeys): no HTTP here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.errors import Code, ProtocolError
from service.providers.assertions import verify_id_jag, verify_logout_token
from service.providers.claims import ID_JAG_TYPE, LOGOUT_TYPE, check_id_jag, check_logout
from service.providers.jwt_parts import MAX_TOKEN_BYTES, read_jws
from service.providers.trust import TrustedIssuer, VerifiedAssertion, VerifiedLogout
from tests.support.idp import (
    REVOKED_EVENT,
    IdentityProvider,
    ProviderKey,
    PublishedKeys,
    TrustList,
    b64url,
    compact,
)

AUD = "https://auth.example.com"
RESOURCE = "https://api.example.com/api"
NOW = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
T = int(NOW.timestamp())
IDP = IdentityProvider(issuer="https://idp.example")
ISSUER = TrustedIssuer(issuer=IDP.issuer)
CODES: frozenset[str] = frozenset(get_args(Code))


async def verify(
    token: str, *, trust: TrustList | None = None, keys: PublishedKeys | None = None
) -> VerifiedAssertion:
    return await verify_id_jag(
        token,
        trust=trust or TrustList(ISSUER),
        keys=keys or PublishedKeys(IDP),
        audience=AUD,
        resource=RESOURCE,
        now=NOW,
    )


async def verify_logout(token: str, *, now: datetime = NOW) -> VerifiedLogout:
    return await verify_logout_token(
        token,
        trust=TrustList(ISSUER),
        keys=PublishedKeys(IDP),
        audience=AUD,
        events_supported=[REVOKED_EVENT],
        now=now,
    )


async def refusal(token: str, **kwargs: Any) -> str:
    with pytest.raises(ProtocolError) as refused:
        await verify(token, **kwargs)
    return refused.value.code


def claims(**changes: Any) -> dict[str, Any]:
    """Valid ID-JAG claims; a change to None removes the claim."""
    base = IDP.id_jag_claims(aud=AUD, now=NOW)
    merged = {**base, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def checked(payload: Mapping[str, Any], issuer: TrustedIssuer = ISSUER) -> VerifiedAssertion:
    return check_id_jag(
        dict(payload),
        issuer=issuer,
        audience=AUD,
        resource=RESOURCE,
        now=NOW,
        key_id="kid-1",
        algorithm="ES256",
    )


def claim_refusal(payload: Mapping[str, Any], issuer: TrustedIssuer = ISSUER) -> str:
    with pytest.raises(ProtocolError) as refused:
        checked(payload, issuer)
    return refused.value.code


def raw_token(header: str, payload: str, signature: bytes = b"sig") -> str:
    """A token from literal JSON texts (for what json.dumps would not write)."""
    encode = base64.urlsafe_b64encode
    return (
        ".".join(encode(part).rstrip(b"=").decode() for part in (header.encode(), payload.encode()))
        + f".{b64url(signature)}"
    )


HEADER = json.dumps({"typ": ID_JAG_TYPE, "alg": "ES256", "kid": IDP.signing_key.kid})


# a valid token, each algorithm


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
async def test_valid_id_jag_is_accepted_for_each_algorithm(alg: str) -> None:
    """A well-formed ID-JAG signed with any allowed algorithm verifies to its claims."""
    key = ProviderKey.generate(alg)
    provider = IdentityProvider(issuer="https://other-idp.example")
    provider.keys = [key]
    token = provider.mint_id_jag(aud=AUD, now=NOW, key=key, overrides={"name": "Ana"})
    result = await verify_id_jag(
        token,
        trust=TrustList(TrustedIssuer(issuer=provider.issuer)),
        keys=PublishedKeys(provider),
        audience=AUD,
        resource=RESOURCE,
        now=NOW,
    )
    assert (result.issuer, result.subject, result.audience) == (provider.issuer, "user-1", AUD)
    assert (result.algorithm, result.key_id, result.name) == (alg, key.kid, "Ana")
    assert result.email == "user-1@example.net"
    assert result.expires_at == NOW + timedelta(minutes=5)
    assert result.remember_until == NOW + timedelta(minutes=6)


# intake: size and shape


def _token_of_length(length: int) -> str:
    header = b64url(HEADER.encode())
    for pad in range(4):
        payload = b64url(json.dumps(claims(pad="x" * pad)).encode())
        signature_length = length - len(header) - len(payload) - 2
        if signature_length % 4 != 1:
            return f"{header}.{payload}.{'A' * signature_length}"
    raise AssertionError("unreachable")


def test_token_of_8_kib_is_read() -> None:
    """A token of exactly 8 KiB is within the limit."""
    token = _token_of_length(MAX_TOKEN_BYTES)
    assert len(token) == MAX_TOKEN_BYTES
    assert read_jws(token, typ=ID_JAG_TYPE).kid == IDP.signing_key.kid


def test_token_over_8_kib_is_refused_before_parsing() -> None:
    """One byte more is invalid_request, even with a well-formed token."""
    signed = IDP.sign(claims(pad="x" * MAX_TOKEN_BYTES))
    for token in (_token_of_length(MAX_TOKEN_BYTES + 1), signed):
        with pytest.raises(ProtocolError) as refused:
            read_jws(token, typ=ID_JAG_TYPE)
        assert refused.value.code == "invalid_request"
        assert "at most" in refused.value.message


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",  # a JWE
        ".payload.sig",
        "header..sig",
        "a+b.c.d",
        "YQ==.YQ.YQ",
        "é.a.a",
        "a.a.a ",
    ],
)
def test_token_that_is_not_a_compact_jws_is_invalid_request(token: str) -> None:
    """Anything but three base64url segments (the last may be empty) is invalid_request."""
    with pytest.raises(ProtocolError) as refused:
        read_jws(token, typ=ID_JAG_TYPE)
    assert refused.value.code == "invalid_request"


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        ("not json", "{}"),
        (HEADER, "not json"),
        ("[1, 2]", "{}"),
        (HEADER, '"a string"'),
        (HEADER, "null"),
        ('{"typ": "a", "typ": "b"}', "{}"),  # duplicate member
        (HEADER, '{"sub": "a", "sub": "b"}'),
        (HEADER, '{"exp": NaN}'),
        (HEADER, '{"exp": Infinity}'),
        (HEADER, '{"exp": 1' + "0" * 5000 + "}"),  # more digits than Python parses
        (HEADER, "[" * 3000 + "]" * 3000),
    ],
    ids=[
        "header not json", "payload not json", "header an array", "payload a string",
        "payload null", "duplicate header member", "duplicate payload member", "NaN", "Infinity",
        "huge number", "deep nesting",
    ],
)  # fmt: skip
def test_segments_that_are_not_json_objects_are_invalid_request(header: str, payload: str) -> None:
    """Header and payload must each be one JSON object, without duplicates or non-JSON numbers."""
    with pytest.raises(ProtocolError) as refused:
        read_jws(raw_token(header, payload), typ=ID_JAG_TYPE)
    assert refused.value.code == "invalid_request"


def test_segment_that_is_not_utf8_is_invalid_request() -> None:
    """JSON in another encoding (here UTF-16) is refused: RFC 7515 says UTF-8."""
    payload = b64url(json.dumps(claims()).encode("utf-16"))
    token = f"{b64url(HEADER.encode())}.{payload}.{b64url(b'sig')}"
    with pytest.raises(ProtocolError) as refused:
        read_jws(token, typ=ID_JAG_TYPE)
    assert refused.value.code == "invalid_request"


# intake: the header


@pytest.mark.parametrize(
    "typ", ["oauth-id-jag+jwt", "OAuth-ID-JAG+JWT", "application/oauth-id-jag+jwt"]
)
def test_typ_is_case_insensitive_and_may_carry_application_prefix(typ: str) -> None:
    """The typ rule tolerates case and the `application/` media-type prefix."""
    token = IDP.sign(claims(), header=IDP.header(typ))
    assert read_jws(token, typ=ID_JAG_TYPE).header["typ"] == typ


@pytest.mark.parametrize(
    "typ", [None, "JWT", "logout+jwt", "oauth-id-jag", 7, "text/oauth-id-jag+jwt"]
)
async def test_wrong_or_missing_typ_is_invalid_request(typ: object) -> None:
    """An ID-JAG must say so in `typ`; anything else (or nothing) is invalid_request."""
    header = IDP.header(changes={"typ": typ}, remove=["typ"] if typ is None else [])
    assert await refusal(IDP.sign(claims(), header=header)) == "invalid_request"


@pytest.mark.parametrize(
    "changes",
    [{"alg": None}, {"alg": 256}, {"kid": None}, {"kid": ""}, {"kid": 7}, {"crit": ["exp"]}],
)
async def test_malformed_header_is_invalid_request(changes: dict[str, Any]) -> None:
    """No alg string, no kid, or a `crit` extension: a malformed header, invalid_request."""
    removed = [name for name, value in changes.items() if value is None]
    header = IDP.header(changes=changes, remove=removed)
    assert await refusal(IDP.sign(claims(), header=header)) == "invalid_request"


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "ES384", "RS512", "es256", "None"])
async def test_alg_outside_the_allow_list_is_invalid_signature(alg: str) -> None:
    """A well-formed alg we do not accept is invalid_signature, whatever the signature."""
    assert await refusal(IDP.sign(claims(), header=IDP.header(changes={"alg": alg}))) == (
        "invalid_signature"
    )


async def test_alg_none_token_is_invalid_signature() -> None:
    """`alg: none` with an empty signature is refused, and no key is looked up."""
    keys = PublishedKeys(IDP)
    assert await refusal(IDP.unsigned(claims()), keys=keys) == "invalid_signature"
    assert keys.lookups == 0


async def test_hs256_keyed_with_the_public_key_is_invalid_signature() -> None:
    """The algorithm-confusion attack (HMAC with the public PEM as secret) fails."""
    assert await refusal(IDP.hmac_with_public_key(claims())) == "invalid_signature"


async def test_alg_not_allowed_for_the_issuer_is_invalid_signature() -> None:
    """An alg in ALGORITHMS but outside the issuer's own list fails before any key lookup."""
    keys = PublishedKeys(IDP)
    strict = TrustList(TrustedIssuer(issuer=IDP.issuer, algorithms=("EdDSA",)))
    assert await refusal(IDP.sign(claims()), trust=strict, keys=keys) == "invalid_signature"
    assert keys.lookups == 0


# issuer and signature


@pytest.mark.parametrize("iss", [None, "", 42, "https://evil.example", "https://idp.example/"])
async def test_untrusted_or_missing_iss_is_invalid_issuer_before_any_key_lookup(
    iss: object,
) -> None:
    """iss must name a trusted issuer exactly; the keys are not consulted otherwise."""
    keys = PublishedKeys(IDP)
    token = IDP.sign(claims(iss=iss) if iss is not None else claims(iss=None))
    assert await refusal(token, keys=keys) == "invalid_issuer"
    assert keys.lookups == 0


async def test_trust_entry_for_another_issuer_string_is_invalid_issuer() -> None:
    """A lookup that answers with an entry for a different string does not make iss trusted."""

    async def sloppy(iss: str) -> TrustedIssuer:
        return ISSUER

    token = IDP.sign(claims(iss="https://idp.example/"))
    with pytest.raises(ProtocolError) as refused:
        await verify_id_jag(
            token, trust=sloppy, keys=PublishedKeys(IDP), audience=AUD, resource=RESOURCE, now=NOW
        )
    assert refused.value.code == "invalid_issuer"


async def test_tampered_payload_is_invalid_signature() -> None:
    """A signature of other claims does not cover these."""
    signed = claims()
    token = IDP.tampered(claims(sub="admin"), signed=signed)
    assert await refusal(token) == "invalid_signature"


async def test_unknown_kid_is_invalid_signature() -> None:
    """A key the issuer's JWKS does not publish: invalid_signature."""
    assert await refusal(IDP.signed_by_stranger(claims())) == "invalid_signature"


async def test_empty_signature_with_an_allowed_alg_is_invalid_signature() -> None:
    """An allowed alg with no signature at all fails the signature check."""
    token = IDP.sign(claims()).rsplit(".", 1)[0] + "."
    assert await refusal(token) == "invalid_signature"


async def test_key_of_another_type_than_the_alg_is_invalid_signature() -> None:
    """A header naming ES256 over an Ed25519 key (same kid) fails, it does not crash."""
    provider = IdentityProvider(issuer="https://ed-idp.example", alg="EdDSA")
    token = provider.sign(
        provider.id_jag_claims(aud=AUD, now=NOW), header=provider.header(changes={"alg": "ES256"})
    )
    with pytest.raises(ProtocolError) as refused:
        await verify_id_jag(
            token,
            trust=TrustList(TrustedIssuer(issuer=provider.issuer)),
            keys=PublishedKeys(provider),
            audience=AUD,
            resource=RESOURCE,
            now=NOW,
        )
    assert refused.value.code == "invalid_signature"


# claims: aud and resource


@pytest.mark.parametrize(
    "aud", [AUD, AUD + "/", [AUD], ["https://other.example", AUD], ["x", 7, AUD + "/"]]
)
def test_aud_accepts_our_issuer_as_string_or_in_an_array(aud: object) -> None:
    """aud = our issuer (one trailing slash ignored), alone or among others."""
    assert checked(claims(aud=aud)).audience == AUD


@pytest.mark.parametrize(
    "aud", [None, "", RESOURCE, AUD + "//", "https://auth.example.com/x", [], [RESOURCE], 7, {}]
)
def test_wrong_or_missing_aud_is_invalid_audience(aud: object) -> None:
    """Anything but our issuer, including the API's resource URL, is invalid_audience."""
    assert claim_refusal(claims(aud=aud) if aud is not None else claims(aud=None)) == (
        "invalid_audience"
    )


def at_v06_door(payload: Mapping[str, Any]) -> VerifiedAssertion:
    return check_id_jag(
        dict(payload), issuer=ISSUER, audience=AUD, resource=RESOURCE, now=NOW,
        key_id="kid-1", algorithm="ES256", resource_audience=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("aud", "named"),
    [(AUD, AUD), (AUD + "/", AUD), (RESOURCE, RESOURCE), (RESOURCE + "/", RESOURCE),
     ([RESOURCE], RESOURCE), ([RESOURCE, AUD], AUD), (["x", RESOURCE], RESOURCE)],
)  # fmt: skip
def test_v06_door_accepts_the_resource_as_aud_and_says_which_was_named(
    aud: object, named: str
) -> None:
    """O-D: at the v0.6 door an `aud` naming our issuer or the API's resource passes; the
    verified audience is the one it named, ours when it named both."""
    assert at_v06_door(claims(aud=aud)).audience == named


@pytest.mark.parametrize("aud", ["", AUD + "//", "https://api.example.com/other", [], 7, ["x"]])
def test_v06_door_refuses_any_other_aud(aud: object) -> None:
    """O-D: anything but our issuer or the resource is still invalid_audience."""
    with pytest.raises(ProtocolError) as refused:
        at_v06_door(claims(aud=aud))
    assert refused.value.code == "invalid_audience"


def test_resource_claim_equal_to_our_resource_is_accepted() -> None:
    """A resource claim naming this API passes."""
    assert checked(claims(resource=RESOURCE)).subject == "user-1"


@pytest.mark.parametrize("resource", ["https://api.example.com/other", AUD, 7, ""])
def test_resource_claim_naming_another_resource_is_invalid_audience(resource: object) -> None:
    """When present, resource must be this API's PRM resource."""
    assert claim_refusal(claims(resource=resource)) == "invalid_audience"


# claims: times


def test_missing_exp_is_invalid_request() -> None:
    """exp is required."""
    assert claim_refusal(claims(exp=None)) == "invalid_request"


def test_exp_more_than_60_s_past_is_expired() -> None:
    """exp must be later than now - 60 s."""
    assert claim_refusal(claims(iat=T - 300, exp=T - 60)) == "expired"
    assert checked(claims(iat=T - 300, exp=T - 59)).expires_at == NOW - timedelta(seconds=59)


def test_lifetime_over_600_s_is_invalid_request() -> None:
    """exp - iat may be at most 600 s."""
    assert claim_refusal(claims(iat=T, exp=T + 601)) == "invalid_request"
    assert checked(claims(iat=T, exp=T + 600)).issued_at == NOW


def test_missing_iat_is_invalid_request() -> None:
    """iat is required."""
    assert claim_refusal(claims(iat=None)) == "invalid_request"


def test_iat_more_than_60_s_ahead_is_invalid_request() -> None:
    """iat may be at most 60 s in the future (skew); later is invalid_request, not expired."""
    assert claim_refusal(claims(iat=T + 61, exp=T + 300)) == "invalid_request"
    assert checked(claims(iat=T + 60, exp=T + 300)).issued_at == NOW + timedelta(seconds=60)


def test_nbf_more_than_60_s_ahead_is_invalid_request() -> None:
    """nbf, when present, may be at most 60 s in the future."""
    assert claim_refusal(claims(nbf=T + 61)) == "invalid_request"
    assert checked(claims(nbf=T + 60)).subject == "user-1"


@pytest.mark.parametrize("name", ["exp", "iat", "nbf", "auth_time"])
@pytest.mark.parametrize(
    "value", ["1751362200", True, [T], {"t": T}, -1, 10**30, float("inf"), float("nan")]
)
def test_time_claims_of_the_wrong_type_or_range_are_invalid_request(
    name: str, value: object
) -> None:
    """Times are JSON numbers in [1970, 3000); strings, booleans, arrays, huge ones are not."""
    payload = {**claims(), name: value}
    assert claim_refusal(payload) == "invalid_request"


def test_null_counts_as_absent() -> None:
    """A JSON null is no exp or iat (refused), and no nbf or name (accepted)."""
    assert claim_refusal({**claims(), "exp": None}) == "invalid_request"
    assert claim_refusal({**claims(), "iat": None}) == "invalid_request"
    result = checked({**claims(), "nbf": None, "auth_time": None, "name": None})
    assert (result.auth_time, result.name) == (None, None)


def test_fractional_times_are_accepted() -> None:
    """NumericDates may have a fraction."""
    result = checked(claims(iat=T + 0.5, exp=T + 300.25, auth_time=T - 10.5))
    assert result.expires_at == NOW + timedelta(seconds=300.25)
    assert result.auth_time == NOW - timedelta(seconds=10.5)


# claims: sub, jti, optional types


@pytest.mark.parametrize("name", ["sub", "jti"])
@pytest.mark.parametrize("value", [None, "", 7, ["a"], "a\x00b", "\ud800"])
def test_sub_and_jti_must_be_non_empty_strings(name: str, value: object) -> None:
    """sub and jti: required, non-empty, storable text; otherwise invalid_request."""
    payload = {**claims(), name: value}
    if value is None:
        del payload[name]
    assert claim_refusal(payload) == "invalid_request"


@pytest.mark.parametrize(
    ("name", "value"),
    [("name", 7), ("agent_platform", ["x"]), ("agent_context_id", {}), ("amr", "mfa")],
)
def test_optional_claims_of_the_wrong_type_are_invalid_request(name: str, value: object) -> None:
    """Optional claims we hand on must have their registered type."""
    assert claim_refusal({**claims(), name: value}) == "invalid_request"


# claims: client_id


@pytest.mark.parametrize(
    "client_id", [None, "", 7, "https://evil.example/agent-auth.json", "https://idp.example/"]
)
def test_client_id_other_than_iss_or_a_pinned_cimd_is_invalid_client_id(
    client_id: object,
) -> None:
    """client_id is required and must be iss or a CIMD URL pinned in the trust entry."""
    payload = claims(client_id=client_id) if client_id is not None else claims(client_id=None)
    assert claim_refusal(payload) == "invalid_client_id"


def test_pinned_cimd_client_id_is_accepted() -> None:
    """A client_id the trust entry pins is accepted besides iss."""
    cimd = "https://idp.example/agent-auth.json"
    issuer = TrustedIssuer(issuer=IDP.issuer, client_ids=(cimd,))
    assert checked(claims(client_id=cimd), issuer).client_id == cimd
    assert claim_refusal(claims(client_id=cimd)) == "invalid_client_id"


# claims: verified identity


@pytest.mark.parametrize(
    "changes",
    [
        {"email_verified": None},
        {"email_verified": False},
        {"email_verified": "true"},
        {"email_verified": 1},
        {"email": None},
        {"email": ""},
        {"email": 7},
        {"email": None, "phone_number": "+33600000000", "phone_number_verified": "true"},
        {"email": None, "phone_number_verified": True},
    ],
)
def test_no_verified_email_or_phone_is_missing_verified_email(changes: dict[str, Any]) -> None:
    """Only a boolean true flag with its string value counts; truthy look-alikes do not."""
    assert claim_refusal(claims(**changes)) == "missing_verified_email"


def test_verified_phone_without_email_is_accepted() -> None:
    """A verified phone number is an identity too; the unverified email is not handed on."""
    result = checked(
        claims(email_verified=False, phone_number="+33600000000", phone_number_verified=True)
    )
    assert (result.email, result.phone_number) == (None, "+33600000000")


def test_unverified_phone_is_not_handed_on() -> None:
    """Beside a verified email, an unverified phone number is dropped."""
    result = checked(claims(phone_number="+33600000000", phone_number_verified=False))
    assert (result.email, result.phone_number) == ("user-1@example.net", None)


# claims: amr


@pytest.mark.parametrize("amr", [None, [], ["pwd"], ["otp"]])
def test_amr_lacking_a_required_method_is_insufficient_user_authentication(
    amr: list[str] | None,
) -> None:
    """Every method in the issuer's required_amr must be in amr."""
    issuer = TrustedIssuer(issuer=IDP.issuer, required_amr=("mfa", "pwd"))
    assert claim_refusal(claims(amr=amr), issuer) == "insufficient_user_authentication"


def test_amr_with_every_required_method_is_accepted() -> None:
    """amr may hold more than required."""
    issuer = TrustedIssuer(issuer=IDP.issuer, required_amr=("mfa",))
    assert checked(claims(amr=["pwd", "mfa", "hwk"]), issuer).amr == ("pwd", "mfa", "hwk")


# logout tokens


def logout_claims(**changes: Any) -> dict[str, Any]:
    merged = {**IDP.logout_claims(aud=AUD, now=NOW), **changes}
    return {k: v for k, v in merged.items() if v is not None}


def logout_refusal(payload: Mapping[str, Any]) -> str:
    with pytest.raises(ProtocolError) as refused:
        check_logout(
            dict(payload), issuer=ISSUER, audience=AUD, events_supported=[REVOKED_EVENT], now=NOW
        )
    return refused.value.code


async def test_valid_logout_token_is_accepted() -> None:
    """A logout token without exp is remembered until iat + 300 s + 60 s."""
    result = await verify_logout(IDP.mint_logout_token(aud=AUD, now=NOW))
    assert (result.issuer, result.subject, result.audience, result.event) == (
        IDP.issuer,
        "user-1",
        AUD,
        REVOKED_EVENT,
    )
    assert result.remember_until == NOW + timedelta(seconds=360)


@pytest.mark.parametrize("typ", ["logout+jwt", "application/Logout+JWT"])
async def test_logout_typ_tolerates_case_and_prefix(typ: str) -> None:
    """Same typ tolerance as ID-JAGs."""
    token = IDP.mint_logout_token(aud=AUD, now=NOW, header={"typ": typ})
    assert (await verify_logout(token)).subject == "user-1"


@pytest.mark.parametrize("typ", [None, ID_JAG_TYPE, "JWT", "secevent+jwt"])
async def test_logout_token_of_another_typ_is_invalid_request(typ: str | None) -> None:
    """An ID-JAG (or any other typ) cannot be replayed as a logout token."""
    token = IDP.mint_logout_token(
        aud=AUD, now=NOW, header={"typ": typ}, remove_header=["typ"] if typ is None else []
    )
    with pytest.raises(ProtocolError) as refused:
        await verify_logout(token)
    assert refused.value.code == "invalid_request"


async def test_logout_from_untrusted_issuer_is_invalid_issuer() -> None:
    """The trust list gates logout tokens too."""
    token = IDP.mint_logout_token(aud=AUD, now=NOW, overrides={"iss": "https://evil.example"})
    with pytest.raises(ProtocolError) as refused:
        await verify_logout(token)
    assert refused.value.code == "invalid_issuer"


async def test_logout_with_a_bad_signature_is_invalid_signature() -> None:
    """A logout token signed by a key the issuer does not publish is refused."""
    with pytest.raises(ProtocolError) as refused:
        await verify_logout(IDP.signed_by_stranger(logout_claims(), typ=LOGOUT_TYPE))
    assert refused.value.code == "invalid_signature"


def test_logout_with_wrong_aud_is_invalid_signature() -> None:
    """As in [REF] (a library failure), a wrong aud on a logout token is invalid_signature."""
    assert logout_refusal(logout_claims(aud=RESOURCE)) == "invalid_signature"


@pytest.mark.parametrize("name", ["iat", "jti", "sub"])
def test_logout_without_iat_jti_or_sub_is_invalid_request(name: str) -> None:
    """iat, jti and sub are required."""
    assert logout_refusal(logout_claims(**{name: None})) == "invalid_request"


@pytest.mark.parametrize(
    "events",
    [
        None,
        [],
        "revoked",
        {},
        {REVOKED_EVENT: True},
        {REVOKED_EVENT: []},
        {"http://schemas.openid.net/event/backchannel-logout": {}},
    ],
)
def test_logout_without_a_supported_event_object_is_invalid_request(events: object) -> None:
    """events must hold a URI from events_supported with an object value."""
    assert logout_refusal(logout_claims(events=events)) == "invalid_request"


def test_logout_with_a_nonce_is_invalid_request() -> None:
    """nonce is forbidden in logout tokens."""
    assert logout_refusal(logout_claims(nonce="n-1")) == "invalid_request"


def test_logout_without_exp_older_than_300_s_is_invalid_request() -> None:
    """Without exp, iat must be at most 300 s old."""
    assert logout_refusal(logout_claims(iat=T - 301)) == "invalid_request"
    ok = check_logout(
        logout_claims(iat=T - 300),
        issuer=ISSUER,
        audience=AUD,
        events_supported=[REVOKED_EVENT],
        now=NOW,
    )
    assert ok.remember_until == NOW + timedelta(seconds=60)


def test_logout_with_exp_is_judged_by_exp_and_iat() -> None:
    """With exp, the token is taken until exp + 60 s or iat + 300 s, whichever comes first,
    and the jti is kept until then (security finding 8)."""
    result = check_logout(
        logout_claims(iat=T - 200, exp=T + 100),
        issuer=ISSUER,
        audience=AUD,
        events_supported=[REVOKED_EVENT],
        now=NOW,
    )
    assert result.remember_until == NOW + timedelta(seconds=160)
    late_exp = check_logout(
        logout_claims(iat=T - 200, exp=T + 400),
        issuer=ISSUER,
        audience=AUD,
        events_supported=[REVOKED_EVENT],
        now=NOW,
    )
    assert late_exp.remember_until == NOW + timedelta(seconds=160)
    assert logout_refusal(logout_claims(iat=T - 200, exp=T - 60)) == "invalid_request"


def test_logout_older_than_300_s_is_invalid_request_even_with_a_live_exp() -> None:
    """An exp in the future does not stretch a logout token's age past 300 s."""
    assert logout_refusal(logout_claims(iat=T - 301, exp=T + 299)) == "invalid_request"


def test_logout_living_longer_than_600_s_is_invalid_request() -> None:
    """exp - iat is at most 600 s, as for ID-JAGs; exactly 600 s is accepted."""
    assert logout_refusal(logout_claims(iat=T, exp=T + 601)) == "invalid_request"
    ok = check_logout(
        logout_claims(iat=T, exp=T + 600),
        issuer=ISSUER,
        audience=AUD,
        events_supported=[REVOKED_EVENT],
        now=NOW,
    )
    assert ok.remember_until == NOW + timedelta(seconds=360)


@pytest.mark.parametrize("changes", [{"iat": T + 61}, {"nbf": T + 61}, {"iat": "now"}])
def test_logout_from_the_future_or_with_bad_times_is_invalid_request(
    changes: dict[str, Any],
) -> None:
    """iat and nbf at most 60 s ahead, and numbers."""
    assert logout_refusal(logout_claims(**changes)) == "invalid_request"


# fuzzing: only ProtocolError ever comes out


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["\ud800", "a\x00b", "", "true", IDP.issuer, AUD, REVOKED_EVENT]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
CLAIM_NAMES = st.sampled_from(
    [
        "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "email", "email_verified",
        "phone_number", "phone_number_verified", "resource", "amr", "auth_time", "name",
        "agent_platform", "agent_context_id", "events", "nonce",
    ]
)  # fmt: skip
HEADER_NAMES = st.sampled_from(["typ", "alg", "kid", "crit", "jku", "x5u", "b64", "cty"])
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


async def outcome(token: str) -> str:
    """The verifier's answer to a token: an error code, or 'accepted'; anything else escapes."""
    try:
        await verify(token)
    except ProtocolError as error:
        return error.code
    return "accepted"


async def logout_outcome(token: str) -> str:
    try:
        await verify_logout(token)
    except ProtocolError as error:
        return error.code
    return "accepted"


@FUZZ
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
async def test_fuzz_arbitrary_text(token: str) -> None:
    """Any string at all: a ProtocolError, nothing else."""
    assert await outcome(token) in CODES


@FUZZ
@given(st.lists(st.binary(max_size=120).map(b64url), min_size=1, max_size=5))
async def test_fuzz_base64url_segments_of_random_bytes(segments: list[str]) -> None:
    """Well-encoded garbage in any number of segments: a ProtocolError."""
    assert await outcome(".".join(segments)) in CODES


@FUZZ
@given(JSON, JSON, st.binary(max_size=80))
async def test_fuzz_json_segments_of_any_shape(header: Any, payload: Any, signature: bytes) -> None:
    """Any JSON values as header and payload: a ProtocolError."""
    assert await outcome(compact({"h": header}, {"p": payload}, signature)) in CODES
    raw = raw_token(json.dumps(header), json.dumps(payload), signature)
    assert await outcome(raw) in CODES


@FUZZ
@given(st.text(alphabet='{}[]":,0123456789.eE-+ ntrufalsNIiy\\u', max_size=200))
async def test_fuzz_json_text(payload: str) -> None:
    """Near-JSON text as the payload (bad escapes, huge exponents, truncation): a ProtocolError."""
    assert await outcome(raw_token(HEADER, payload)) in CODES


@FUZZ
@given(
    st.dictionaries(CLAIM_NAMES, JSON, max_size=4),
    st.sets(CLAIM_NAMES, max_size=3),
    st.dictionaries(HEADER_NAMES, JSON, max_size=2),
)
async def test_fuzz_signed_id_jags_with_hostile_claims(
    changes: dict[str, Any], removed: set[str], header_changes: dict[str, Any]
) -> None:
    """Correctly signed tokens with any claim or header member replaced or removed: the
    verifier answers with a code (or accepts), and accepts only what the rules allow."""
    payload = {k: v for k, v in {**claims(), **changes}.items() if k not in removed}
    token = IDP.sign(payload, header={**IDP.header(), **header_changes})
    answer = await outcome(token)
    assert answer in CODES | {"accepted"}
    if answer == "accepted":
        assert payload.get("email_verified") is True or payload.get("phone_number_verified") is True
        assert payload["client_id"] == IDP.issuer


@FUZZ
@given(st.dictionaries(CLAIM_NAMES, JSON, max_size=4), st.sets(CLAIM_NAMES, max_size=3))
async def test_fuzz_signed_logout_tokens_with_hostile_claims(
    changes: dict[str, Any], removed: set[str]
) -> None:
    """The same for logout tokens."""
    payload = {k: v for k, v in {**logout_claims(), **changes}.items() if k not in removed}
    token = IDP.sign(payload, header=IDP.header(LOGOUT_TYPE))
    answer = await logout_outcome(token)
    assert answer in CODES | {"accepted"}
    if answer == "accepted":
        assert "nonce" not in payload
        assert isinstance(payload["events"][REVOKED_EVENT], dict)

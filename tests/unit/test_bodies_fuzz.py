"""Every request body reader, fed anything: it answers a value of its type or refuses with a
protocol error (or the admin API's refusal), never with another exception (never a 500)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar, cast

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Request

from service.commands.subscriptions import BadSubscription, check_terms
from service.commands.trust_list import BadEntry, check_entry
from service.domain.errors import ProtocolError
from service.http.admin import ErasureBody, IssuerBody, RevocationBody
from service.http.bodies import (
    FORM,
    LOGOUT_JWT,
    ChallengeBody,
    CompleteBody,
    RegisterBody,
    StartClaimBody,
    check_email,
    read_form_token,
    read_json,
    read_logout_token,
)
from service.http.subscriptions import CreateBody, PatchBody, ReplayBody
from service.providers.trust import ALGORITHMS, TrustedIssuer

T = TypeVar("T")
BODIES: list[type[msgspec.Struct]] = [
    RegisterBody,
    StartClaimBody,
    ChallengeBody,
    CompleteBody,
    IssuerBody,
    RevocationBody,
    ErasureBody,
    CreateBody,
    PatchBody,
    ReplayBody,
]
MEDIA = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "application/merge-patch+json",
     FORM, LOGOUT_JWT, "text/plain", "", "APPLICATION/JSON"]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class FakeRequest:
    """What the readers use of a Litestar Request: the content type and the body."""

    def __init__(self, media: str, body: bytes) -> None:
        self.headers = {"content-type": media}
        self._body = body

    async def body(self) -> bytes:
        return self._body


def request(media: str, body: bytes) -> Request[Any, Any, Any]:
    return cast(Request[Any, Any, Any], FakeRequest(media, body))


def fields_of(kind: type[msgspec.Struct]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the Struct's own field names (any subset), any values, maybe one more."""
    names = list(kind.__struct_fields__)
    return st.builds(
        lambda chosen, extra: {**chosen, **extra},
        st.fixed_dictionaries({}, optional=dict.fromkeys(names, JSON)),
        st.dictionaries(st.text(max_size=8), JSON, max_size=1),
    )


def bodies(kind: type[msgspec.Struct]) -> st.SearchStrategy[bytes]:
    return (
        st.binary(max_size=300)
        | JSON.map(msgspec.json.encode)
        | fields_of(kind).map(msgspec.json.encode)
        | fields_of(kind).map(lambda value: msgspec.json.encode(value)[:-1])  # truncated
    )


async def attempt(call: Awaitable[T]) -> T | ProtocolError:
    """What the reader answered: its value, or the ProtocolError it raised (anything else
    propagates and fails the test)."""
    try:
        return await call
    except ProtocolError as exc:
        return exc


def refused(answer: object) -> bool:
    """A refusal as the spec has it: `invalid_request`, 400."""
    if not isinstance(answer, ProtocolError):
        return False
    assert (answer.code, answer.status) == ("invalid_request", 400)
    return True


@pytest.mark.parametrize("kind", BODIES, ids=lambda kind: kind.__name__)
@FAST
@given(media=MEDIA, body=st.data())
async def test_json_bodies_decode_or_refuse(
    kind: type[msgspec.Struct], media: str, body: st.DataObject
) -> None:
    """Any bytes under any content type: the Struct, or `invalid_request`."""
    answer = await attempt(read_json(request(media, body.draw(bodies(kind))), kind))
    assert refused(answer) or isinstance(answer, kind)


JWTISH = st.lists(st.text(alphabet="ABCabc012-_=+/.", max_size=12), min_size=1, max_size=5).map(
    ".".join
)


@FAST
@given(media=MEDIA, body=st.binary(max_size=200) | JWTISH.map(str.encode) | JSON.map(str).map(
    lambda text: b"logout_token=" + text.encode()
))  # fmt: skip
async def test_logout_token_reader_reads_or_refuses(media: str, body: bytes) -> None:
    """E9's body: a compact JWT (either way it may come), or `invalid_request`."""
    token = await attempt(read_logout_token(request(media, body)))
    if not refused(token):
        assert isinstance(token, str)
        assert token.count(".") == 2
        assert token == token.strip()


@FAST
@given(
    media=MEDIA,
    body=st.binary(max_size=200)
    | st.text(max_size=120).map(lambda t: ("claim_attempt_token=" + t).encode())
    | st.text(max_size=120).map(str.encode),
)
async def test_form_token_reader_reads_or_refuses(media: str, body: bytes) -> None:
    """E7's form: exactly one well-formed token, or `invalid_request`."""
    token = await attempt(read_form_token(request(media, body), "claim_attempt_token"))
    if not refused(token):
        assert isinstance(token, str)
        assert 0 < len(token) <= 256


@FAST
@given(st.text(max_size=300) | st.emails())
def test_email_check_accepts_or_refuses(value: str) -> None:
    """An address, or `invalid_request` naming the field."""
    answer: object
    try:
        answer = check_email(value, "email")
    except ProtocolError as exc:
        answer = exc
    assert refused(answer) or answer == value
    if isinstance(answer, ProtocolError):
        assert "email" in answer.message


URLISH = st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(["https://", "http://", "https://[", "ftp://", "", "https://u@"]),
    st.text(max_size=40),
)


ENTRIES = st.builds(
    TrustedIssuer,
    issuer=URLISH,
    jwks_uri=st.none() | URLISH,
    algorithms=st.lists(st.sampled_from([*ALGORITHMS, "none", "HS256", ""]), max_size=3).map(tuple),
    display_name=st.none() | st.text(max_size=220),
    client_ids=st.lists(URLISH, max_size=2).map(tuple),
)


@FAST
@given(entry=ENTRIES, loopback=st.booleans())
def test_trust_terms_are_checked_or_refused(entry: TrustedIssuer, loopback: bool) -> None:
    """POST /admin/trusted-issuers past decoding: the entry, or BadEntry (the admin API's 400)."""
    with contextlib.suppress(BadEntry):
        assert check_entry(entry, allow_loopback_http=loopback) is entry


TERMS = st.fixed_dictionaries(
    {
        "url": URLISH,
        "audience": st.text(max_size=30),
        "secret": st.none() | st.text(max_size=40),
        "event_types": st.lists(
            st.sampled_from(["credential.revoked", "credential.expired", "other", ""]),
            max_size=3,
        ).map(tuple),
        "reasons": st.lists(st.text(max_size=12), max_size=3).map(tuple),
        "allow_loopback_http": st.booleans(),
    }
)


@FAST
@given(terms=TERMS)
def test_subscription_terms_are_checked_or_refused(terms: dict[str, Any]) -> None:
    """POST /admin/subscriptions past decoding: the terms, or BadSubscription (a 400)."""
    with contextlib.suppress(BadSubscription):
        check_terms(**terms)

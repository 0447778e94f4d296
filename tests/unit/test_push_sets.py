"""SETs (RFC 8417, CAEP credential-change), what a receiver's answer means (RFC 8935), and
subscribers' sealed secrets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.clock import ManualClock
from events.credential import CredentialExpired, CredentialRescoped, CredentialRevoked
from events.envelope import RecordedEvent
from events.ledger import LEDGER
from service.crypto.signing import SigningKey, public_jwk
from service.push.delivery import classify
from service.push.secrets import SecretUnreadable, open_secret, seal_secret
from service.push.sets import (
    CREDENTIAL_CHANGE,
    CredentialEnded,
    credential_ended,
    set_claims,
    set_jti,
    sign_set,
)

ISSUER = "https://auth.example.test"
AUDIENCE = "https://rs.example/events"
WHEN = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
EVENT_ID = uuid.UUID("01900000-0000-7000-8000-000000000001")
SERVER_SECRET = "s" * 40


def signing_key() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    jwk = public_jwk(private)
    return SigningKey(jwk["kid"], "EdDSA", private, jwk, WHEN, WHEN, None)


def ended(**changes: object) -> CredentialEnded:
    fields: dict[str, object] = {
        "position": 42,
        "event_id": EVENT_ID,
        "credential_id": "cred_abc",
        "credential_kind": "api_key",
        "change": "revoked",
        "reason": "operator",
        "occurred_at": WHEN,
    }
    return CredentialEnded(**{**fields, **changes})  # type: ignore[arg-type]


def recorded(event: object, *, position: int = 7) -> RecordedEvent:
    new = LEDGER.new(event, occurred_at=WHEN)  # type: ignore[arg-type]
    return RecordedEvent(
        position=position, event_id=new.event_id, tenant_id="default", stream_type="credential",
        stream_id="cred_xyz", stream_version=3, type=new.type, schema_version=new.schema_version,
        occurred_at=WHEN, recorded_at=WHEN, payload=new.payload,
        metadata=msgspec.json.encode(new.metadata), hash=b"\0" * 32,
    )  # fmt: skip


def test_a_set_is_a_typed_eddsa_jws_with_the_caep_credential_change_event() -> None:
    """Header typ/alg/kid per RFC 8417 §2.3; claims iss, aud, iat, jti, txn, sub_id, events;
    it verifies with the public JWK the service publishes."""
    key = signing_key()
    now = ManualClock(WHEN).now()
    token = sign_set(
        set_claims(ended(), issuer=ISSUER, audience=AUDIENCE, subscription_id="sub_1", now=now),
        key,
    )
    header = jwt.get_unverified_header(token)
    assert header == {"typ": "secevent+jwt", "alg": "EdDSA", "kid": key.kid}
    claims = jwt.decode(
        token, jwt.PyJWK(key.public_jwk).key, algorithms=["EdDSA"], audience=AUDIENCE,
        issuer=ISSUER,
    )  # fmt: skip
    assert claims == {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(WHEN.timestamp()),
        "jti": set_jti("sub_1", EVENT_ID),
        "txn": str(EVENT_ID),
        "sub_id": {"format": "opaque", "id": "cred_abc"},
        "events": {
            CREDENTIAL_CHANGE: {
                "credential_type": "api_key",
                "change_type": "revoke",
                "event_timestamp": int(WHEN.timestamp()),
                "initiating_entity": "admin",
                "reason_admin": {"en": "credential revoked (operator)"},
            }
        },
    }
    assert "exp" not in claims


def test_jti_is_the_same_on_every_send_and_differs_between_subscribers() -> None:
    """A retry or replay repeats the jti; another subscriber's SET of the same event has its
    own; another event has another."""
    first = set_claims(ended(), issuer=ISSUER, audience=AUDIENCE, subscription_id="sub_1", now=WHEN)
    later = set_claims(
        ended(), issuer=ISSUER, audience=AUDIENCE, subscription_id="sub_1", now=datetime.now(UTC)
    )
    assert first["jti"] == later["jti"]
    assert len(first["jti"]) == 32
    assert set_jti("sub_2", EVENT_ID) != first["jti"]
    assert set_jti("sub_1", uuid.uuid4()) != first["jti"]
    assert first["txn"] == later["txn"] == str(EVENT_ID)


@pytest.mark.parametrize(
    ("change", "reason", "entity", "text"),
    [
        ("revoked", "operator", "admin", "credential revoked (operator)"),
        ("revoked", "logout", "system", "credential revoked (logout)"),
        ("revoked", "registration_expired", "policy", "credential revoked (registration_expired)"),
        ("revoked", "something_new", "system", "credential revoked (something_new)"),
        ("expired", "expired", "policy", "credential expired"),
    ],
)
def test_every_ending_is_a_revoke_told_apart_by_who_initiated_it(
    change: str, reason: str, entity: str, text: str
) -> None:
    """Expiry is a CAEP `revoke` too; `initiating_entity` and `reason_admin` say why."""
    claims = set_claims(
        ended(change=change, reason=reason), issuer=ISSUER, audience=AUDIENCE,
        subscription_id="sub_1", now=WHEN,
    )  # fmt: skip
    event = claims["events"][CREDENTIAL_CHANGE]
    assert (event["change_type"], event["initiating_entity"]) == ("revoke", entity)
    assert event["reason_admin"] == {"en": text}


def test_an_access_token_is_named_by_its_jwt_id() -> None:
    """An access token's jti is its credential id: RFC 9493 `jwt_id` lets a resource server
    checking tokens offline match it directly."""
    claims = set_claims(
        ended(credential_kind="access_token"), issuer=ISSUER, audience=AUDIENCE,
        subscription_id="sub_1", now=WHEN,
    )  # fmt: skip
    assert claims["sub_id"] == {"format": "jwt_id", "iss": ISSUER, "jti": "cred_abc"}
    assert claims["events"][CREDENTIAL_CHANGE]["credential_type"] == "access_token"


def test_credential_ended_reads_revocations_and_expiries_and_nothing_else() -> None:
    revoked = credential_ended(recorded(CredentialRevoked(reason="logout")), "api_key")
    assert (revoked.change, revoked.reason, revoked.credential_id) == (
        "revoked",
        "logout",
        "cred_xyz",
    )
    assert (revoked.position, revoked.occurred_at) == (7, WHEN)
    gone = credential_ended(recorded(CredentialExpired()), None)
    assert (gone.change, gone.reason, gone.credential_kind) == ("expired", "expired", None)
    with pytest.raises(TypeError):
        credential_ended(recorded(CredentialRescoped(scopes=("a",))), "api_key")


@pytest.mark.parametrize(
    "case",
    [
        (202, b"", None, None, False, None),
        (200, b"ok", None, None, False, None),
        (204, b"", None, None, False, None),
        (400, b'{"err":"invalid_audience","description":"x"}', None,
         "http 400 invalid_audience", True, None),
        (400, b'{"err":"has spaces!"}', None, "http 400", True, None),
        (400, b"not json", None, "http 400", True, None),
        (401, b"", None, "http 401", True, None),
        (403, b'{"err":"access_denied"}', None, "http 403 access_denied", True, None),
        (301, b"", None, "http 301 (redirects are not followed)", True, None),
        (404, b"", None, "http 404", False, None),
        (429, b"", "30", "http 429", False, 30.0),
        (503, b"", "Wed, 21 Oct 2026 07:28:00 GMT", "http 503", False, None),
        (500, b"", None, "http 500", False, None),
    ],
)  # fmt: skip
def test_what_an_answer_means(
    case: tuple[int, bytes, str | None, str | None, bool, float | None],
) -> None:
    """2xx delivers; 400/401/403/3xx are final; the rest is retried (Retry-After seconds)."""
    status, body, retry_after, error, permanent, wait = case
    outcome = classify(status, body, retry_after, 12)
    assert (outcome.status, outcome.error, outcome.permanent) == (status, error, permanent)
    assert (outcome.retry_after, outcome.duration_ms, outcome.delivered) == (
        wait,
        12,
        error is None,
    )


def test_a_sealed_secret_opens_only_for_its_subscription_under_the_server_key() -> None:
    plain = "whsec_" + "A" * 30
    sealed = seal_secret(SERVER_SECRET, "sub_1", plain)
    assert plain not in sealed
    assert sealed != seal_secret(SERVER_SECRET, "sub_1", plain)  # a fresh nonce each time
    assert open_secret(SERVER_SECRET, "sub_1", sealed) == plain
    for server, subscription, value in (
        (SERVER_SECRET, "sub_2", sealed),
        ("t" * 40, "sub_1", sealed),
        (SERVER_SECRET, "sub_1", sealed[:-4] + "AAAA"),
        (SERVER_SECRET, "sub_1", "v2." + sealed[3:]),
        (SERVER_SECRET, "sub_1", "v1.%%%"),
    ):
        with pytest.raises(SecretUnreadable):
            open_secret(server, subscription, value)

"""E4 registration and both claim ceremonies end to end, the way an agent and a person do them:
the agent over HTTP, the person through the real e-mail (SMTP sink) and the claim page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from service.crypto.tokens import token_hash
from service.tenancy.config import ID_JAG
from tests.support.app_client import (
    CLIENT_IP,
    PUBLIC_URL,
    Service,
    link_of,
    otp_of,
    running_service,
)
from tests.support.backends import Backend
from tests.support.id_jag import ADMIN

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EMAIL = "ana.lopez@example.net"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as service:
        yield service


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"


async def code_from_mail(svc: Service, number: int) -> str:
    """The person: open mail `number`, follow the link, press the button, read the code."""
    page = await svc.client.get(link_of(await svc.mail(number)))
    assert page.status_code == 200
    answer = await svc.press_button(page)
    assert answer.status_code == 200
    return otp_of(answer.text)


async def test_anonymous_registration_answers_the_documented_shape(svc: Service) -> None:
    """E4 anonymous: §5.1 fields in order, absolute claim_url, ms times, a pre-claim key row."""
    response = await svc.client.post(
        "/agent/auth", json={"type": "anonymous", "requested_credential_type": "api_key"}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert list(body) == [
        "registration_id", "registration_type", "credential_type", "credential",
        "credential_expires", "scopes", "claim_url", "claim_token", "claim_token_expires",
        "post_claim_scopes",
    ]  # fmt: skip
    assert body["registration_id"].startswith("reg_")
    assert body["registration_type"] == "anonymous"
    assert body["credential_type"] == "api_key"
    assert body["credential_expires"] is None
    assert body["scopes"] == ["api.read"]
    assert body["claim_url"] == f"{PUBLIC_URL}/agent/auth/claim"
    assert body["claim_token"].startswith("clm_")
    assert TIME.match(body["claim_token_expires"])
    assert body["claim_token_expires"] == iso(svc.clock.now() + timedelta(days=1))
    assert body["post_claim_scopes"] == ["api.read", "api.write"]
    key = await svc.row("credentials", "token_hash", token_hash(body["credential"]))
    assert key["scopes"] == ["api.read"]
    assert key["status"] == "active"
    assert key["registration_id"] == body["registration_id"]
    assert key["user_id"] is None


async def test_events_carry_the_request_id_and_a_sealed_client_ip(svc: Service) -> None:
    """The request id (echoed in X-Request-ID) correlates the events; the IP is only sealed."""
    response = await svc.client.post(
        "/agent/auth",
        json={"type": "anonymous", "requested_credential_type": "api_key"},
        headers={"X-Request-ID": "req-e2e-42"},
    )
    assert response.headers["x-request-id"] == "req-e2e-42"
    rows = await svc.resources.pool.fetch("SELECT metadata::text AS m FROM events")
    assert len(rows) == 2  # registration.created + credential.issued
    for row in rows:
        metadata = msgspec.json.decode(row["m"])
        assert metadata["correlation_id"] == "req-e2e-42"
        assert metadata["client_ip"].startswith("pii1.")
        assert CLIENT_IP not in row["m"]


async def test_events_record_the_v1_door_and_dialect(svc: Service) -> None:
    """Every event an agent or a person causes through `/agent/auth…` and its claim page says
    door `v1`, dialect `0.1.0`; an operator's revocation says neither."""
    registered = await svc.verified_email(EMAIL)
    otp = await code_from_mail(svc, 1)
    body = {"claim_token": registered["claim_token"], "otp": otp}
    completed = await svc.client.post("/agent/auth/claim/complete", json=body)
    assert completed.status_code == 200
    by_agent_or_person = await svc.resources.pool.fetch(
        "SELECT type, metadata::text AS m FROM events ORDER BY position"
    )
    assert sorted(r["type"] for r in by_agent_or_person) == [
        "claim.attempt_started", "claim.otp_issued", "credential.issued", "registration.claimed",
        "registration.created", "user.created",
    ]  # fmt: skip
    for row in by_agent_or_person:
        metadata = msgspec.json.decode(row["m"])
        assert (metadata["door"], metadata["dialect"]) == ("v1", "0.1.0"), row["type"]
    revoked = await svc.client.post(
        "/admin/revocations",
        json={"registration_id": registered["registration_id"]},
        headers=ADMIN,
    )
    assert revoked.status_code == 200
    [operator] = await svc.resources.pool.fetch(
        "SELECT metadata::text AS m FROM events WHERE type = 'credential.revoked'"
    )
    assert {"door", "dialect"}.isdisjoint(msgspec.json.decode(operator["m"]))


async def test_anonymous_ceremony_rescopes_the_key_and_binds_the_user(svc: Service) -> None:
    """register → claim → mail → page (mints nothing) → button → code → claimed: the same
    key now has the post-claim scopes and the new user, and the claim is final."""
    registered = await svc.anonymous()
    claim_token = registered["claim_token"]
    started = await svc.client.post(
        "/agent/auth/claim", json={"claim_token": claim_token, "email": EMAIL}
    )
    assert started.status_code == 200
    answer = started.json()
    assert answer["registration_id"] == registered["registration_id"]
    assert answer["claim_attempt_id"].startswith("cla_")
    assert answer["status"] == "initiated"
    assert answer["expires_at"] == iso(svc.clock.now() + timedelta(minutes=10))

    mail = await svc.mail(1)
    assert mail.rcpt_tos == (EMAIL,)
    page = await svc.client.get(link_of(mail))
    assert page.status_code == 200
    assert EMAIL in page.text
    assert registered["registration_id"] in page.text
    assert await svc.count("claim.otp_issued") == 0  # W12: opening the link mints nothing
    code_page = await svc.press_button(page)
    assert code_page.status_code == 200
    assert code_page.headers["cache-control"] == "no-store"
    otp = otp_of(code_page.text)
    assert await svc.count("claim.otp_issued") == 1

    completed = await svc.client.post(
        "/agent/auth/claim/complete", json={"claim_token": claim_token, "otp": otp}
    )
    assert completed.status_code == 200
    assert completed.json() == {
        "registration_id": registered["registration_id"],
        "status": "claimed",
    }
    key = await svc.row("credentials", "token_hash", token_hash(registered["credential"]))
    assert key["scopes"] == ["api.read", "api.write"]
    assert key["user_id"] is not None
    assert key["user_id"].startswith("usr_")
    assert await svc.count("credential.issued") == 1  # the same key, re-scoped
    registration = await svc.row("registrations", "registration_id", answer["registration_id"])
    assert registration["status"] == "claimed"
    assert registration["user_id"] == key["user_id"]

    again = await svc.client.post(
        "/agent/auth/claim/complete", json={"claim_token": claim_token, "otp": otp}
    )
    assert (again.status_code, again.json()["error"]) == (409, "previously_claimed")
    late_claim = await svc.client.post(
        "/agent/auth/claim", json={"claim_token": claim_token, "email": EMAIL}
    )
    assert (late_claim.status_code, late_claim.json()["error"]) == (409, "claimed_or_in_flight")


@pytest.mark.parametrize("kind", ["access_token", "api_key"])
async def test_verified_email_ceremony_returns_the_credential_once(svc: Service, kind: str) -> None:
    """E4 verified_email → mail → page → code → E8 returns the credential once; a second
    E8, even with the right code, gets 409 previously_claimed and no credential."""
    registered = await svc.verified_email(EMAIL, kind)
    assert list(registered) == [
        "registration_id", "registration_type", "claim_url", "claim_token",
        "claim_token_expires", "post_claim_scopes",
    ]  # fmt: skip
    assert registered["registration_type"] == "email-verification"
    assert await svc.count("credential.issued") == 0
    mail = await svc.mail(1)
    assert mail.rcpt_tos == (EMAIL,)
    otp = await code_from_mail(svc, 1)

    body = {"claim_token": registered["claim_token"], "otp": otp}
    completed = await svc.client.post("/agent/auth/claim/complete", json=body)
    assert completed.status_code == 200
    assert completed.headers["cache-control"] == "no-store"
    answer = completed.json()
    assert answer["registration_id"] == registered["registration_id"]
    assert answer["status"] == "claimed"
    assert answer["credential_type"] == kind
    assert answer["scopes"] == ["api.read", "api.write"]
    if kind == "access_token":
        assert answer["credential_expires"] == iso(svc.clock.now() + timedelta(hours=1))
    else:
        assert answer["credential_expires"] is None
    row = await svc.row("credentials", "token_hash", token_hash(answer["credential"]))
    assert row["issued_via"] == "verified_email"
    assert row["user_id"] is not None

    again = await svc.client.post("/agent/auth/claim/complete", json=body)
    assert again.status_code == 409
    assert again.json()["error"] == "previously_claimed"
    assert "credential" not in again.json()
    assert await svc.count("credential.issued") == 1


async def test_registration_refusals_name_the_problem_and_write_nothing(svc: Service) -> None:
    """E4's 400s: unknown type, missing assertion, ID-JAG (not yet), bad email, a credential
    type not offered (anonymous access_token, an unknown type); none writes an event."""
    head = await svc.head()
    cases = [
        ({"type": "password", "requested_credential_type": "api_key"}, "invalid_request"),
        ({"type": "identity_assertion", "requested_credential_type": "api_key"},
         "invalid_request"),
        ({"type": "anonymous", "requested_credential_type": "api_key",
          "assertion_type": "verified_email", "assertion": EMAIL}, "invalid_request"),
        ({"type": "identity_assertion", "assertion_type": "saml", "assertion": "x",
          "requested_credential_type": "api_key"}, "invalid_request"),
        ({"type": "identity_assertion", "assertion_type": "verified_email",
          "assertion": "not an email", "requested_credential_type": "api_key"},
         "invalid_request"),
        ({"type": "anonymous", "requested_credential_type": "access_token"},
         "unsupported_credential_type"),
        ({"type": "anonymous", "requested_credential_type": "refresh_token"},
         "unsupported_credential_type"),
        ({"type": "identity_assertion", "assertion_type": "verified_email", "assertion": EMAIL,
          "requested_credential_type": "session"}, "unsupported_credential_type"),
    ]  # fmt: skip
    for body, code in cases:
        response = await svc.client.post("/agent/auth", json=body)
        assert (response.status_code, response.json()["error"]) == (400, code), body
        assert set(response.json()) == {"error", "message"}
    id_jag = await svc.client.post(
        "/agent/auth",
        json={"type": "identity_assertion", "assertion_type": ID_JAG, "assertion": "eyJ.x.y",
              "requested_credential_type": "api_key"},
    )  # fmt: skip
    assert id_jag.status_code == 400
    assert id_jag.json()["error"] == "invalid_request"  # not a JWT
    assert await svc.head() == head


@pytest.mark.parametrize(
    ("flows", "body", "code"),
    [
        ("verified_email", {"type": "anonymous", "requested_credential_type": "api_key"},
         "anonymous_not_enabled"),
        ("anonymous", {"type": "identity_assertion", "assertion_type": "verified_email",
                       "assertion": EMAIL, "requested_credential_type": "access_token"},
         "verified_email_not_enabled"),
    ],
)  # fmt: skip
async def test_a_disabled_flow_is_refused(
    backend: Backend, database_url: str, flows: str, body: dict[str, str], code: str
) -> None:
    """With AUTHLEDGER_FLOWS lacking a method, E4 answers 400 `<method>_not_enabled`."""
    async with running_service(backend, database_url, FLOWS=flows) as svc:
        response = await svc.client.post("/agent/auth", json=body)
        assert (response.status_code, response.json()["error"]) == (400, code)
        assert await svc.head() == 0

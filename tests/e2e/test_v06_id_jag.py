"""V1 with an ID-JAG at the v0.6 door over HTTP (contract cases 22, 23, 25, 26, 27;
docs/design/v06-dialect.md, slice S4): a clean or just-in-time subject gets a service-signed
assertion for its deterministic `reg_…`, which V6 exchanges through its delegation; an
address that matches an account steps up (401 `interaction_required` and the ceremony);
`auth_time` must be fresh (401 `login_required`, nothing written); our issuer and strangers
are refused; the API's resource is accepted as `aud` (O-D). A real test provider serves its
JWKS over HTTP; Postgres, NATS and SMTP are real.

Case 24 (a fresh ID-JAG after the step-up is completed on the claim page) is
test_v06_step_up_claim.py's.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from service.crypto.assertions import verify_assertion
from service.crypto.tokens import registration_id_for_identity
from service.domain.errors import ProtocolError
from service.http.bodies import timestamp
from service.tenancy.config import ID_JAG
from tests.support.app_client import ADMIN_TOKEN, PUBLIC_URL, Service
from tests.support.backends import Backend
from tests.support.id_jag import jag as v1_jag
from tests.support.id_jag import registered as v1_registered
from tests.support.id_jag import trust
from tests.support.idp import IdentityProvider
from tests.support.v06_claim import enter_code, link_token
from tests.support.v06_door import (
    IDENTITY,
    assert_identity_error,
    assert_no_store,
    exchange,
    me,
    v06_service,
    written_by,
)

ALL_SCOPES = ["api.read", "api.write"]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as provider:
        yield provider


@pytest.fixture
async def svc(backend: Backend, database_url: str, idp: IdentityProvider) -> AsyncIterator[Service]:
    async with v06_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true") as service:
        await trust(service, idp)
        yield service


def jag(svc: Service, idp: IdentityProvider, *, auth_age: int | None = 60, **kwargs: Any) -> str:
    """An ID-JAG for the v0.6 door: `auth_time` `auth_age` seconds ago (None: no auth_time)."""
    overrides = dict(kwargs.pop("overrides", {}))
    if auth_age is not None:
        overrides.setdefault("auth_time", int(svc.clock.now().timestamp()) - auth_age)
    return v1_jag(svc, idp, overrides=overrides, **kwargs)


async def present(svc: Service, assertion: str) -> httpx.Response:
    body = {"type": "identity_assertion", "assertion_type": ID_JAG, "assertion": assertion}
    return await svc.client.post(IDENTITY, json=body)


async def served(svc: Service, assertion: str) -> dict[str, Any]:
    response = await present(svc, assertion)
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body: dict[str, Any] = response.json()
    return body


def types(written: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in written]


async def test_clean_jit_deterministic_id(svc: Service, idp: IdentityProvider) -> None:
    """Case 22: a subject never seen, whose address finds no one, is made a user just in time:
    200 with the deterministic `reg_` id of iss, sub and our issuer, a service-signed
    assertion for it (gen 0, the verified address and amr) and every scope; the user, the
    delegation and its use recorded through door v06. A later fresh ID-JAG is a clean match:
    the same id, one more `delegation.used`, no new user."""
    now = svc.clock.now()
    response = await present(svc, jag(svc, idp, sub="agent-22", overrides={"amr": ["pwd"]}))
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    assert list(body) == [
        "registration_id", "registration_type", "identity_assertion", "assertion_expires",
        "scopes",
    ]  # fmt: skip
    subject_id = registration_id_for_identity(idp.issuer, "agent-22", PUBLIC_URL)
    assert body["registration_id"] == subject_id
    assert body["registration_type"] == "identity_assertion"
    assert body["scopes"] == ALL_SCOPES
    assert body["assertion_expires"] == timestamp(now + timedelta(hours=1))
    ctx = await svc.resources.command_context()
    claims = verify_assertion(ctx.keyring, body["identity_assertion"], issuer=PUBLIC_URL, now=now)
    assert (claims.subject, claims.gen) == (subject_id, 0)
    assert (claims.email, claims.email_verified, claims.amr) == (
        "agent-22@example.net", True, ("pwd",)
    )  # fmt: skip
    written = await written_by(svc, response)
    assert types(written) == ["user.created", "delegation.created", "delegation.used"]
    assert {(e["metadata"]["door"], e["metadata"]["dialect"]) for e in written} == {
        ("v06", "0.6.0")
    }
    assert written[1]["payload"]["matched_by"] == "provisioned"
    assert written[2]["payload"]["audience"] is None  # our issuer: nothing to record (O-D)
    delegation = await svc.row("delegations", "delegation_id", "dlg_" + subject_id[4:])
    assert (delegation["matched_by"], delegation["uses"]) == ("provisioned", 1)
    again = await present(svc, jag(svc, idp, sub="agent-22"))
    assert again.status_code == 200, again.text
    assert again.json()["registration_id"] == subject_id
    assert types(await written_by(svc, again)) == ["delegation.used"]
    assert await svc.count("user.created") == 1


async def test_clean_assertion_exchanges_for_the_delegations_user(
    svc: Service, idp: IdentityProvider
) -> None:
    """The clean answer's assertion at V6: an access token with every scope for the
    delegation's user, an `access_token` credential issued via `id_jag` for that subject;
    after the subject's delegation is revoked, the assertion exchanges no more."""
    body = await served(svc, jag(svc, idp, sub="agent-x"))
    answer = await exchange(svc.client, body["identity_assertion"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "api.read api.write"
    delegation_id = "dlg_" + body["registration_id"][4:]
    delegation = await svc.row("delegations", "delegation_id", delegation_id)
    principal = await me(svc.client, answer.json()["access_token"])
    assert principal.status_code == 200, principal.text
    assert principal.json()["user_id"] == delegation["user_id"]
    issued = (await written_by(svc, answer))[0]
    assert issued["type"] == "credential.issued"
    assert (issued["payload"]["delegation_id"], issued["payload"]["issued_via"]) == (
        delegation_id, "id_jag"
    )  # fmt: skip
    logout = idp.mint_logout_token(aud=PUBLIC_URL, now=svc.clock.now(), sub="agent-x")
    revoked = await svc.client.post(
        "/agent/auth/revoke", content=logout, headers={"Content-Type": "application/logout+jwt"}
    )
    assert revoked.status_code == 200, revoked.text
    refused = await exchange(svc.client, body["identity_assertion"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    fresh = await served(svc, jag(svc, idp, sub="agent-x"))  # O9: clean again, next generation
    token = await exchange(svc.client, fresh["identity_assertion"])
    assert token.status_code == 200, token.text


async def user_with_address(svc: Service, idp: IdentityProvider, email: str) -> str:
    """A user holding the verified `email`, made through the v1 door by another subject."""
    body = await v1_registered(svc, v1_jag(svc, idp, sub="owner", overrides={"email": email}))
    principal = await svc.client.get(
        "/api/me", headers={"Authorization": f"Bearer {body['credential']}"}
    )
    user_id: str = principal.json()["user_id"]
    return user_id


async def test_step_up_interaction_required(svc: Service, idp: IdentityProvider) -> None:
    """Case 23: an ID-JAG of a new subject whose verified address is an existing user's, even
    from an issuer that may link by address (the v0.6 door always steps up): 401
    `interaction_required` with an `AgentAuth` challenge, the step-up's handles top level and
    the ceremony in `claim`; the step-up registration, its attempt (the matched user's
    address as the hint) and its code recorded, the jti burned, no delegation made. Presented
    again, a new ceremony replaces the open one (`registration.revoked`, superseded)."""
    await trust(svc, idp, link_by_verified_email=True)
    user_id = await user_with_address(svc, idp, "ana@example.net")
    now = svc.clock.now()
    assertion = jag(svc, idp, sub="agent-23", overrides={"email": "Ana@Example.net"})
    response = await present(svc, assertion)
    assert response.status_code == 401, response.text
    assert_no_store(response)
    assert response.headers["www-authenticate"].startswith(
        'AgentAuth error="interaction_required", error_description="'
    )
    body = response.json()
    assert list(body) == [
        "error", "message", "error_description", "registration_id", "registration_type",
        "claim_url", "claim_token", "claim_token_expires", "post_claim_scopes", "claim",
    ]  # fmt: skip
    assert body["error"] == "interaction_required"
    assert body["message"] == body["error_description"] != ""
    rid = body["registration_id"]
    assert rid.startswith("reg_")
    assert rid != registration_id_for_identity(idp.issuer, "agent-23", PUBLIC_URL)
    assert body["registration_type"] == "identity_assertion"
    assert body["claim_url"] == f"{PUBLIC_URL}/agent/identity/claim"
    assert body["claim_token"].startswith("clm_")
    assert body["claim_token_expires"] == timestamp(now + timedelta(days=1))
    assert body["post_claim_scopes"] == ALL_SCOPES
    claim = body["claim"]
    assert list(claim) == ["user_code", "expires_in", "verification_uri", "interval"]
    assert re.fullmatch(r"[0-9]{6}", claim["user_code"])
    assert (claim["expires_in"], claim["interval"]) == (600, 5)
    uri = urlsplit(claim["verification_uri"])
    assert f"{uri.scheme}://{uri.netloc}{uri.path}" == f"{PUBLIC_URL}/login"
    (return_to,) = parse_qs(uri.query)["return_to"]
    assert re.fullmatch(r"/claim\?claim_attempt_token=cvt_[A-Za-z0-9_-]{32}", return_to)
    written = await written_by(svc, response)
    assert types(written) == ["registration.created", "claim.attempt_started", "claim.otp_issued"]
    created = written[0]["payload"]
    assert (created["registration_id"], created["kind"], created["dialect"]) == (
        rid, "id_jag", "v06"
    )  # fmt: skip
    assert (created["step_up"]["user_id"], created["step_up"]["matched_by"]) == (user_id, "email")
    assert written[1]["payload"]["ceremony"] == "user_code"
    assert (
        written[1]["payload"]["email_index"]
        == (await svc.row("users", "user_id", user_id))["email_index"]
    )
    assert await svc.count("delegation.created") == 1  # the owner's, from the v1 door
    registration = await svc.row("registrations", "registration_id", rid)
    assert (registration["status"], registration["dialect"]) == ("pending_claim", "v06")
    head = await svc.head()
    replay = await present(svc, assertion)
    assert_identity_error(replay, 400, "replay_detected")
    assert await svc.head() == head
    again = await present(
        svc, jag(svc, idp, sub="agent-23", overrides={"email": "ana@example.net"})
    )
    assert again.status_code == 401, again.text
    assert again.json()["registration_id"] != rid
    assert types(await written_by(svc, again)) == [
        "registration.created", "claim.attempt_started", "claim.otp_issued",
        "registration.revoked",
    ]  # fmt: skip
    old = await svc.row("registrations", "registration_id", rid)
    assert (old["status"], old["attempt_token_hash"]) == ("revoked", None)


async def test_step_up_by_phone_hints_the_users_address(
    svc: Service, idp: IdentityProvider
) -> None:
    """A verified phone that finds a user with an address also steps up, the hint being that
    user's address (not the ID-JAG's)."""
    phone = {"phone_number": "+15550100", "phone_number_verified": True}
    owner = v1_jag(svc, idp, sub="owner-p", overrides={"email": "bo@example.net", **phone})
    await v1_registered(svc, owner)
    assertion = jag(svc, idp, sub="agent-p", overrides={"email": "other@example.net", **phone})
    response = await present(svc, assertion)
    assert response.status_code == 401, response.text
    written = await written_by(svc, response)
    assert written[0]["payload"]["step_up"]["matched_by"] == "phone"
    user = await svc.resources.pool.fetchrow(
        "SELECT email_index FROM users WHERE created_via = $1 ORDER BY created_at LIMIT 1",
        idp.issuer,
    )
    assert user is not None
    assert written[1]["payload"]["email_index"] == user["email_index"]


async def test_step_ups_at_the_same_instant_leave_one_open(
    svc: Service, idp: IdentityProvider
) -> None:
    """Four step-ups of one subject presented at once (the same clock instant, concurrent
    requests): each gets its 401 ceremony, but every one but the last to commit is replaced
    (`registration.revoked`, superseded), so exactly one stays open and only its code claims;
    the others' codes are refused."""
    await user_with_address(svc, idp, "ana@example.net")
    jags = [jag(svc, idp, sub="agent-race", overrides={"email": "ana@example.net"})
            for _ in range(4)]  # fmt: skip
    answers = await asyncio.gather(*(present(svc, j) for j in jags))
    assert [a.status_code for a in answers] == [401] * 4, [a.text for a in answers]
    bodies = [a.json() for a in answers]
    statuses = {
        b["registration_id"]: (await svc.row("registrations", "registration_id",
                                             b["registration_id"]))["status"]
        for b in bodies
    }  # fmt: skip
    assert sorted(statuses.values()) == ["pending_claim", "revoked", "revoked", "revoked"]
    reasons = await svc.resources.pool.fetch(
        "SELECT payload->>'reason' AS reason FROM events WHERE type = 'registration.revoked'"
    )
    assert [r["reason"] for r in reasons] == ["superseded"] * 3
    claimed = []
    for body in bodies:
        link = link_token(body["claim"]["verification_uri"])
        try:
            await enter_code(svc, body["claim_token"], link, body["claim"]["user_code"],
                             "ana@example.net")  # fmt: skip
        except ProtocolError:
            continue
        claimed.append(body["registration_id"])
    assert [statuses[rid] for rid in claimed] == ["pending_claim"]
    assert await svc.count("registration.claimed") == 1


@pytest.mark.parametrize(
    ("case", "age"),
    [("missing", None), ("stale", 3_600 + 61), ("a day old", 86_400), ("ahead", -61)],
)
async def test_auth_time_login_required(
    svc: Service, idp: IdentityProvider, case: str, age: int | None
) -> None:
    """Case 25: `auth_time` missing, older than 3600 + 60 s or more than 60 s ahead: 401
    `login_required` with `max_age` in the `AgentAuth` challenge and the body; nothing
    written and the jti not burned (the same jti with a fresh login then registers)."""
    head = await svc.head()
    response = await present(svc, jag(svc, idp, auth_age=age, overrides={"jti": "jti-" + case}))
    assert response.status_code == 401, (case, response.text)
    assert_no_store(response)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('AgentAuth error="login_required", ')
    assert 'max_age="3600"' in challenge
    body = response.json()
    assert set(body) == {"error", "message", "error_description", "max_age"}
    assert (body["error"], body["max_age"]) == ("login_required", 3600)
    assert body["message"] == body["error_description"] != ""
    assert await svc.head() == head
    await served(svc, jag(svc, idp, auth_age=3_600, overrides={"jti": "jti-" + case}))


async def test_id_jag_refusals(svc: Service, idp: IdentityProvider) -> None:
    """Case 26 (and O-C): an untrusted issuer, our own issuer, a bad signature, a replayed
    jti and an ID-JAG without a verified address or phone are refused with their codes, 400
    in the identity family's shape, nothing written."""
    async with IdentityProvider() as stranger:
        untrusted = jag(svc, stranger)
    own = jag(svc, idp, overrides={"iss": PUBLIC_URL, "client_id": PUBLIC_URL})
    claims = idp.id_jag_claims(aud=PUBLIC_URL, now=svc.clock.now())
    claims["auth_time"] = claims["iat"]
    forged = idp.signed_by_stranger(claims)
    unverified = jag(svc, idp, overrides={"email_verified": False})
    used = jag(svc, idp, sub="agent-26")
    await served(svc, used)
    head = await svc.head()
    for assertion, code in (
        (untrusted, "invalid_issuer"),
        (own, "invalid_issuer"),
        (forged, "invalid_signature"),
        (used, "replay_detected"),
        (unverified, "missing_verified_email"),
    ):
        response = await present(svc, assertion)
        assert_identity_error(response, 400, code)
        assert await written_by(svc, response) == []
    assert await svc.head() == head


async def test_resource_audience_accepted_other_refused(
    svc: Service, idp: IdentityProvider
) -> None:
    """Case 27 (O-D): `aud` = the PRM `resource` is accepted, for the same subject id as our
    issuer would give, and `delegation.used` records the resource; any other `aud` is 400
    `invalid_audience`, nothing written."""
    response = await present(svc, jag(svc, idp, sub="agent-27", aud=svc.tenant.resource))
    assert response.status_code == 200, response.text
    subject_id = registration_id_for_identity(idp.issuer, "agent-27", PUBLIC_URL)
    assert response.json()["registration_id"] == subject_id
    used = (await written_by(svc, response))[-1]
    assert (used["type"], used["payload"]["audience"]) == ("delegation.used", svc.tenant.resource)
    head = await svc.head()
    for aud in ("https://elsewhere.example", [f"{PUBLIC_URL}/other"]):
        refused = await present(svc, jag(svc, idp, sub="agent-27", aud=aud))
        assert_identity_error(refused, 400, "invalid_audience")
    assert await svc.head() == head


@pytest.mark.parametrize("scope", ["user_id", "issuer", "registration_id"])
async def test_operator_revocation_ends_the_subjects_assertions(
    svc: Service, idp: IdentityProvider, scope: str
) -> None:
    """O-R, the delegation part: an operator's revocation by user, by provider or by the
    subject's deterministic registration id appends `delegation.revoked` (operator) for the
    delegations in scope, so an assertion the v0.6 door gave their subjects no longer
    exchanges and the token it gave dies; a fresh ID-JAG is served again (O9)."""
    body = await served(svc, jag(svc, idp, sub="agent-or"))
    token = (await exchange(svc.client, body["identity_assertion"])).json()["access_token"]
    delegation_id = "dlg_" + body["registration_id"][4:]
    delegation = await svc.row("delegations", "delegation_id", delegation_id)
    target = {
        "user_id": delegation["user_id"],
        "issuer": idp.issuer,
        "registration_id": body["registration_id"],
    }[scope]
    response = await svc.client.post(
        "/admin/revocations", json={scope: target, "reason": "incident 9"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    written = await written_by(svc, response)
    assert types(written)[0] == "delegation.revoked"
    assert written[0]["payload"]["reason"] == "operator"
    assert "credential.revoked" in types(written)
    assert (await me(svc.client, token)).status_code == 401
    refused = await exchange(svc.client, body["identity_assertion"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert (await svc.row("delegations", "delegation_id", delegation_id))["generation"] == 1
    fresh = await served(svc, jag(svc, idp, sub="agent-or"))
    assert (await exchange(svc.client, fresh["identity_assertion"])).status_code == 200


async def test_operator_revocation_of_a_random_registration_ends_no_delegation(
    svc: Service, idp: IdentityProvider
) -> None:
    """By registration, only an ID-JAG subject's deterministic id names a delegation: an
    anonymous registration's revocation leaves the subjects' assertions alone."""
    body = await served(svc, jag(svc, idp, sub="agent-keep"))
    anonymous = (await svc.client.post(IDENTITY, json={"type": "anonymous"})).json()
    response = await svc.client.post(
        "/admin/revocations", json={"registration_id": anonymous["registration_id"]},
        headers=ADMIN,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert "delegation.revoked" not in types(await written_by(svc, response))
    assert (await exchange(svc.client, body["identity_assertion"])).status_code == 200

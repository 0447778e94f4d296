"""V9 `/agent/event/notify` over HTTP (contract cases 29-33; docs/design/v06-dialect.md,
slice S5): a test provider's Security Event Tokens revoke its subject through the core E9
shares — the subject's credentials from both doors, its assertions (the delegation's
generation moves on), its open step-up registrations — and refusals come in the events
family's `{err, description}` shape, 4xx, nothing written. Against real Postgres, NATS and
SMTP; the default tenant opens both doors.

A subject's delegation is made by the v1 door's ID-JAG registration (E4) and its assertions
are V1's answers to a fresh ID-JAG at the v0.6 door; a step-up is opened by V1 with an
ID-JAG whose address is an existing user's, and its claim token polled at V7, over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from service.crypto.tokens import token_hash
from service.domain.trust_list import delegation_id_for
from tests.e2e.test_v06_id_jag import jag as v06_jag
from tests.e2e.test_v06_id_jag import present, served
from tests.support.app_client import PUBLIC_URL, Service
from tests.support.backends import Backend
from tests.support.id_jag import LOGOUT, jag, registered
from tests.support.id_jag import me as me_v1
from tests.support.idp import IdentityProvider
from tests.support.v06_claim import poll
from tests.support.v06_door import assert_oauth_error, exchange, me, token_for, written_by
from tests.support.v06_events import (
    NOTIFY,
    assert_accepted,
    assert_events_error,
    mint_set,
    notify,
    set_service,
)

OTHER_EVENT = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as provider:
        yield provider


@pytest.fixture
async def svc(backend: Backend, database_url: str, idp: IdentityProvider) -> AsyncIterator[Service]:
    async with set_service(backend, database_url, idp) as running:
        yield running


async def step_up(svc: Service, idp: IdentityProvider, sub: str) -> str:
    """A pending step-up of the subject, opened by V1 with an ID-JAG (no delegation yet)
    whose verified address is a user's (made at the v1 door by another subject): its claim
    token."""
    address = f"{sub}-owner@example.net"
    await registered(svc, jag(svc, idp, sub=f"owner-{sub}", overrides={"email": address}))
    answer = await present(svc, v06_jag(svc, idp, sub=sub, overrides={"email": address}))
    assert answer.status_code == 401, answer.text
    claim_token: str = answer.json()["claim_token"]
    return claim_token


async def poll_verdict(svc: Service, claim_token: str) -> str:
    """What V7 answers for the claim token (its error code; `deliver` for a 200)."""
    response = await poll(svc.client, claim_token)
    if response.status_code == 200:
        return "deliver"
    error: str = response.json()["error"]
    return error


async def test_set_revokes_tokens_assertion_claim_token(
    svc: Service, idp: IdentityProvider
) -> None:
    """Case 29: 202 empty; the subject's v1 credential (E4) and v0.6 access token (V6) → 401;
    its assertion → `invalid_grant`; its open step-up's claim token → `expired_token`; all in
    one request's events at door v06 (`delegation.revoked` reason logout, `credential.revoked`
    reason logout, `registration.revoked` reason logout); another subject's token survives."""
    pending = await step_up(svc, idp, "ana")  # before the v1 door linked the subject
    v1 = await registered(svc, jag(svc, idp, sub="ana"))
    assertion = (await served(svc, v06_jag(svc, idp, sub="ana")))["identity_assertion"]
    v06_token = await token_for(svc.client, assertion)
    bystander = await registered(svc, jag(svc, idp, sub="bo"))
    assert await poll_verdict(svc, pending) == "authorization_pending"
    svc.clock.advance(timedelta(seconds=2))  # the SET is signed after the tokens were issued
    response = await notify(svc, mint_set(svc, idp, sub="ana"))
    assert_accepted(response)
    assert (await me_v1(svc, v1["credential"])).status_code == 401
    assert (await me(svc.client, v06_token)).status_code == 401
    assert_oauth_error(await exchange(svc.client, assertion), 400, "invalid_grant")
    assert await poll_verdict(svc, pending) == "expired_token"
    assert (await me_v1(svc, bystander["credential"])).status_code == 200
    written = await written_by(svc, response)
    assert [e["type"] for e in written] == [
        "delegation.revoked", "credential.revoked", "credential.revoked", "registration.revoked",
    ]  # fmt: skip
    assert all(e["payload"]["reason"] == "logout" for e in written)
    assert {(e["metadata"]["door"], e["metadata"]["dialect"]) for e in written} == {
        ("v06", "0.6.0")
    }
    assert {e["metadata"]["actor"] for e in written} == {f"provider:{idp.issuer}"}
    dlg = delegation_id_for(idp.issuer, "ana", PUBLIC_URL)
    delegation = await svc.row("delegations", "delegation_id", dlg)
    assert delegation["generation"] == 1
    ended = await svc.row("registrations", "claim_token_hash", token_hash(pending))
    assert ended["status"] == "revoked"


async def test_set_ends_a_step_up_before_any_delegation(
    svc: Service, idp: IdentityProvider
) -> None:
    """A subject with no delegation yet but a pending step-up: the SET ends the step-up (its
    claim token → `expired_token`) and writes nothing else; a second pending step-up of
    another subject stays open."""
    pending, other = await step_up(svc, idp, "cy"), await step_up(svc, idp, "di")
    response = await notify(svc, mint_set(svc, idp, sub="cy"))
    assert_accepted(response)
    [ended] = await written_by(svc, response)
    assert (ended["type"], ended["payload"]["reason"]) == ("registration.revoked", "logout")
    assert await poll_verdict(svc, pending) == "expired_token"
    assert await poll_verdict(svc, other) == "authorization_pending"
    assert await svc.count("delegation.revoked") == 0


async def test_set_replay_issuer_signature_typ(svc: Service, idp: IdentityProvider) -> None:
    """Case 30: a replayed SET → `invalid_request`; an untrusted or missing `iss` →
    `invalid_issuer`; a tampered or stranger-signed SET, `typ logout+jwt`, a wrong `aud`, an
    `iat` too old or in the future → `authentication_failed`; no `jti`, no `sub`, empty or
    non-object `events` → `invalid_request`; nothing written by any, the subject untouched."""
    ana = await registered(svc, jag(svc, idp, sub="ana"))
    token = mint_set(svc, idp, sub="nobody")
    assert_accepted(await notify(svc, token))
    head = await svc.head()
    assert_events_error(await notify(svc, token), 400, "invalid_request")
    claims = idp.logout_claims(aud=PUBLIC_URL, now=svc.clock.now(), sub="ana")
    now = int(svc.clock.now().timestamp())
    async with IdentityProvider() as stranger:
        untrusted = mint_set(svc, stranger, sub="ana")
    cases = {
        "untrusted": (untrusted, "invalid_issuer"),
        "no iss": (mint_set(svc, idp, sub="ana", remove=["iss"]), "invalid_issuer"),
        "tampered": (idp.tampered({**claims, "sub": "bo"}, signed=claims, typ="secevent+jwt"),
                     "authentication_failed"),
        "stranger key": (idp.signed_by_stranger(claims, typ="secevent+jwt"),
                         "authentication_failed"),
        "logout typ": (idp.mint_logout_token(aud=PUBLIC_URL, now=svc.clock.now(), sub="ana"),
                       "authentication_failed"),
        "alg none": (idp.unsigned(claims, typ="secevent+jwt"), "authentication_failed"),
        "wrong aud": (mint_set(svc, idp, sub="ana", aud="https://elsewhere.example"),
                      "authentication_failed"),
        "too old": (mint_set(svc, idp, sub="ana", overrides={"iat": now - 301}),
                    "authentication_failed"),
        "future": (mint_set(svc, idp, sub="ana", overrides={"iat": now + 120}),
                   "authentication_failed"),
        "no jti": (mint_set(svc, idp, sub="ana", remove=["jti"]), "invalid_request"),
        "no sub": (mint_set(svc, idp, sub="ana", remove=["sub"]), "invalid_request"),
        "empty events": (mint_set(svc, idp, sub="ana", overrides={"events": {}}),
                         "invalid_request"),
        "events not objects": (mint_set(svc, idp, sub="ana", overrides={"events": {"x": 1}}),
                               "invalid_request"),
    }  # fmt: skip
    for name, (bad, err) in cases.items():
        response = await notify(svc, bad)
        assert response.status_code == 400, name
        assert_events_error(response, 400, err)
    assert await svc.head() == head
    assert (await me_v1(svc, ana["credential"])).status_code == 200


async def test_set_unknown_events_no_effect(svc: Service, idp: IdentityProvider) -> None:
    """Case 31: a SET with only event URIs we do not act on → 202 and no event, the subject's
    credential still works; its jti is burned all the same (sent again: `invalid_request`)."""
    ana = await registered(svc, jag(svc, idp, sub="ana"))
    head = await svc.head()
    token = mint_set(svc, idp, sub="ana", overrides={"events": {OTHER_EVENT: {}}})
    assert_accepted(await notify(svc, token))
    assert await svc.head() == head
    assert (await me_v1(svc, ana["credential"])).status_code == 200
    burned = await svc.resources.pool.fetchval(
        "SELECT count(*) FROM seen_jtis WHERE issuer = $1", idp.issuer
    )
    assert burned == 2  # the ID-JAG's and the SET's
    assert_events_error(await notify(svc, token), 400, "invalid_request")


async def test_set_content_type_and_empty(svc: Service, idp: IdentityProvider) -> None:
    """Case 32 and V9's other bad input: a wrong or missing content type (the SET itself as
    JSON, as a logout token, as text), an empty or blank body, a body that is no compact JWT,
    invalid UTF-8, a token past 8 KiB → 400 `invalid_request`; a body past 16 KiB → 413; GET →
    405; each in the events family's shape, and nothing written."""
    ana = await registered(svc, jag(svc, idp, sub="ana"))
    good = mint_set(svc, idp, sub="ana")
    head = await svc.head()
    secevent = {"content-type": "application/secevent+jwt"}
    tries: list[tuple[str | bytes, dict[str, str], int]] = [
        (good, {"content-type": "application/json"}, 400),
        (good, dict(LOGOUT), 400),
        (good, {"content-type": "text/plain"}, 400),
        (good, {}, 400),
        (b"", secevent, 400),
        (b"   \n", secevent, 400),
        (b"not a jwt", secevent, 400),
        (b'{"events": {}}', secevent, 400),
        (b"\xff\xfe.a.b", secevent, 400),
        (good + "." + good, secevent, 400),
        ("a" * 8200 + ".b.c", secevent, 400),
        ("a" * 17000 + ".b.c", secevent, 413),
    ]
    for body, headers, status in tries:
        response = await notify(svc, body, headers)
        assert_events_error(response, status, "invalid_request")
        assert await written_by(svc, response) == []
    wrong_method = await svc.client.get(NOTIFY)
    assert_events_error(wrong_method, 405, "method_not_allowed")
    assert await svc.head() == head
    assert_accepted(await notify(svc, good))  # the SET itself was fine all along
    assert (await me_v1(svc, ana["credential"])).status_code == 401


async def test_fresh_id_jag_after_set(svc: Service, idp: IdentityProvider) -> None:
    """Case 33: after a SET, a fresh ID-JAG of the subject registers again (a clean match on
    its delegation, same user) and works; its assertion of the new generation exchanges,
    one of the old generation stays `invalid_grant`."""
    first = await registered(svc, jag(svc, idp, sub="ana"))
    user_id = (await me_v1(svc, first["credential"])).json()["user_id"]
    old = (await served(svc, v06_jag(svc, idp, sub="ana")))["identity_assertion"]
    svc.clock.advance(timedelta(seconds=1))
    assert_accepted(await notify(svc, mint_set(svc, idp, sub="ana")))
    svc.clock.advance(timedelta(seconds=2))  # past the end of the SET's iat second
    again = await registered(svc, jag(svc, idp, sub="ana"))
    assert again["registration_id"] == first["registration_id"]
    principal = await me_v1(svc, again["credential"])
    assert principal.status_code == 200
    assert principal.json()["user_id"] == user_id
    assert (await me_v1(svc, first["credential"])).status_code == 401
    renewed = await served(svc, v06_jag(svc, idp, sub="ana"))  # V1 at the v0.6 door too
    assert renewed["registration_id"] == first["registration_id"]
    fresh = await token_for(svc.client, renewed["identity_assertion"])
    assert (await me(svc.client, fresh)).status_code == 200
    assert_oauth_error(await exchange(svc.client, old), 400, "invalid_grant")
    assert await svc.count("delegation.created") == 1


async def test_one_budget_per_issuer_with_e9(
    backend: Backend, database_url: str, idp: IdentityProvider, tmp_path: Path
) -> None:
    """`revoke_per_issuer` is E9's bucket: a logout token at E9 spends it, then a SET from the
    same issuer is 429 `rate_limited` with Retry-After in the events shape, nothing written, its
    jti not burned (sent again once the window passed, it is taken)."""
    limits = tmp_path / "limits.toml"
    limits.write_text('[default]\nrevoke_per_issuer = "1/h"\n')
    async with set_service(backend, database_url, idp, RATE_LIMITS=str(limits)) as limited:
        logout = idp.mint_logout_token(aud=PUBLIC_URL, now=limited.clock.now(), sub="ana")
        e9 = await limited.client.post("/agent/auth/revoke", content=logout, headers=LOGOUT)
        assert e9.status_code == 200, e9.text
        head = await limited.head()
        token = mint_set(limited, idp, sub="ana")
        refused = await notify(limited, token)
        assert_events_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) > 0
        assert await limited.head() == head
        forged = await notify(limited, token[:-4] + "AAAA")  # unverified: spends nothing
        assert_events_error(forged, 400, "authentication_failed")

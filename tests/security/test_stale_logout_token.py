"""Attack (issue 12, finding 8): a logout token kept, or minted with a long `exp`, is posted to
E9 long after the provider signed it, and ends credentials the subject got afterwards.

Before the fix only a token *without* `exp` had a maximum age (300 s): with an `exp`, any `iat`
and any lifetime passed, and a logout revoked every active credential of the delegation,
including those issued after its `iat`. Now a logout token is taken at most 300 s after its
`iat` whatever its `exp`, a lifetime (`exp - iat`) over 600 s is refused, both as
`invalid_request` with nothing written, and a logout revokes only what was issued before it
was signed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from service.commands.revocation import issued_before
from service.providers.claims import LOGOUT_MAX_AGE, MAX_LOGOUT_LIFETIME
from tests.support.app_client import PUBLIC_URL, Service
from tests.support.backends import Backend
from tests.support.id_jag import LOGOUT, jag, me, registered, trusting_service
from tests.support.idp import IdentityProvider

REVOKE = "/agent/auth/revoke"


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as provider:
        yield provider


@pytest.fixture
async def svc(backend: Backend, database_url: str, idp: IdentityProvider) -> AsyncIterator[Service]:
    async with trusting_service(backend, database_url, idp) as running:
        yield running


def _logout(svc: Service, idp: IdentityProvider, lifetime: timedelta) -> str:
    """A logout token for `ana` signed now, with `exp` = now + `lifetime`."""
    now = svc.clock.now()
    exp = int((now + lifetime).timestamp())
    return idp.mint_logout_token(aud=PUBLIC_URL, now=now, sub="ana", overrides={"exp": exp})


async def _refused_and_nothing_written(svc: Service, token: str, credential: str) -> None:
    head = await svc.head()
    response = await svc.client.post(REVOKE, content=token, headers=LOGOUT)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert await svc.head() == head
    assert await svc.count("credential.revoked") == 0
    assert (await me(svc, credential)).status_code == 200


@pytest.mark.parametrize(
    ("lifetime", "posted_after"),
    [
        (timedelta(seconds=MAX_LOGOUT_LIFETIME), timedelta(seconds=LOGOUT_MAX_AGE + 1)),
        (timedelta(seconds=MAX_LOGOUT_LIFETIME), timedelta(seconds=MAX_LOGOUT_LIFETIME - 1)),
    ],
    ids=["just past the maximum age", "at the end of an allowed lifetime"],
)
async def test_an_old_logout_token_is_refused_and_revokes_nothing(
    svc: Service, idp: IdentityProvider, lifetime: timedelta, posted_after: timedelta
) -> None:
    """A token whose `exp` has not passed but whose `iat` is over 300 s old is invalid_request,
    and the credential issued before it stays usable."""
    credential = (await registered(svc, jag(svc, idp, sub="ana"), "api_key"))["credential"]
    token = _logout(svc, idp, lifetime)
    svc.clock.advance(posted_after)
    await _refused_and_nothing_written(svc, token, credential)


async def test_a_logout_token_with_too_long_a_lifetime_is_refused(
    svc: Service, idp: IdentityProvider
) -> None:
    """`exp - iat` over 600 s is invalid_request even when posted at once: a provider that mints
    day-long logout tokens must fix them, and nothing is revoked."""
    credential = (await registered(svc, jag(svc, idp, sub="ana"), "api_key"))["credential"]
    token = _logout(svc, idp, timedelta(days=1))
    await _refused_and_nothing_written(svc, token, credential)


async def test_a_credential_issued_after_the_token_iat_survives_the_logout(
    svc: Service, idp: IdentityProvider
) -> None:
    """A logout signed at `iat` revokes the credential issued before it, not the one issued
    after it (while the token was on its way, or kept to be posted later)."""
    earlier = (await registered(svc, jag(svc, idp, sub="ana"), "api_key"))["credential"]
    svc.clock.advance(timedelta(seconds=10))
    token = _logout(svc, idp, timedelta(seconds=120))
    svc.clock.advance(timedelta(seconds=10))
    later = (await registered(svc, jag(svc, idp, sub="ana"), "api_key"))["credential"]
    response = await svc.client.post(REVOKE, content=token, headers=LOGOUT)
    assert response.status_code == 200, response.text
    assert response.json() == {"revoked": 1}
    assert (await me(svc, earlier)).status_code == 401
    assert (await me(svc, later)).status_code == 200
    assert await svc.count("credential.revoked") == 1


def test_a_credential_of_the_iat_second_counts_as_earlier() -> None:
    """`iat` is whole seconds, so the cutoff is the end of its second: when in doubt, revoke."""
    iat = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    assert issued_before(iat) == iat + timedelta(seconds=1)
    assert issued_before(iat + timedelta(milliseconds=400)) == iat + timedelta(seconds=1)

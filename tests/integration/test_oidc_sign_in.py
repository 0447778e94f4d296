"""OIDC sign-in (service/signin/oidc.py) against the test provider's OpenID face over real HTTP
on 127.0.0.1: discovery, the authorization redirect as a browser follows it, the code redeemed
with PKCE, the ID token checked with keys from the provider's JWKS. No routes yet: the test
plays the browser and the callback route.

Provider and service share a ManualClock, so "ten minutes later" is a clock move.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from events.clock import ManualClock
from service.outbound.policy import OutboundPolicy
from service.signin.keys import SignInKeys
from service.signin.oidc import (
    CALLBACK_PATH,
    OIDC_COOKIE,
    OidcSignedIn,
    OidcSignIn,
    OidcStart,
    code_challenge,
)
from service.signin.oidc_provider import OidcRefused, OidcSettings
from service.signin.sessions import new_session, open_session, session_cookie
from tests.support.idp import IdentityProvider, ProviderKey
from tests.support.oidc_face import OidcFace
from tests.support.outbound import LOOPBACK_POLICY

KEYS = SignInKeys.from_secret("o" * 48)
SERVICE = "http://127.0.0.1:8000"
TENANT = "default"
CLIENT = "authledger-test"
SECRET = "s3cret with spaces&more"
RETURN_TO = "/claim?claim_attempt_token=cvt_abc"


@dataclass
class Flow:
    idp: IdentityProvider
    face: OidcFace
    clock: ManualClock
    sign_in: OidcSignIn
    browser: httpx.AsyncClient

    async def start(self) -> OidcStart:
        return await self.sign_in.start(
            tenant_id=TENANT, service_issuer=SERVICE, return_to=RETURN_TO
        )

    async def authorize(self, url: str) -> dict[str, str]:
        """Follow the authorization URL as a browser would; the callback's query."""
        answer = await self.browser.get(url)
        assert answer.status_code == 302, answer.text
        location = urlsplit(answer.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == SERVICE + CALLBACK_PATH
        return {k: v[0] for k, v in parse_qs(location.query).items()}

    async def callback(
        self, start: OidcStart, query: dict[str, str], cookie: str | None = None
    ) -> OidcSignedIn:
        return await self.sign_in.callback(
            tenant_id=TENANT, service_issuer=SERVICE,
            cookie_value=start.cookie.value if cookie is None else cookie,
            state=query.get("state"), code=query.get("code"), error=query.get("error"),
        )  # fmt: skip

    async def sign_in_once(self) -> OidcSignedIn:
        start = await self.start()
        return await self.callback(start, await self.authorize(start.authorize_url))

    async def refused(self, start: OidcStart, query: dict[str, str], **kw: str) -> str:
        with pytest.raises(OidcRefused) as refused:
            await self.callback(start, query, **kw)
        return refused.value.code


async def flow_with(
    idp: IdentityProvider, secret: str | None, outbound: OutboundPolicy | None = LOOPBACK_POLICY
) -> AsyncIterator[Flow]:
    clock = ManualClock()
    face = idp.oidc(CLIENT, secret, now=clock.now)
    settings = OidcSettings(issuer=idp.issuer, client_id=CLIENT, client_secret=secret)
    sign_in = OidcSignIn(
        settings, KEYS, clock=clock, outbound=outbound, allow_loopback_http=True,
        within=timedelta(seconds=2),
    )  # fmt: skip
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as browser:
        try:
            yield Flow(idp, face, clock, sign_in, browser)
        finally:
            await sign_in.close()


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider(alg="RS256") as provider:
        yield provider


@pytest.fixture
async def flow(idp: IdentityProvider) -> AsyncIterator[Flow]:
    async for made in flow_with(idp, SECRET):
        yield made


async def test_happy_path_gives_a_session(flow: Flow) -> None:
    """Start, authorize, callback: the verified address, ready for a session cookie."""
    start = await flow.start()
    assert start.cookie.key == OIDC_COOKIE
    assert (start.cookie.max_age, start.cookie.httponly, start.cookie.samesite) == (
        600,
        True,
        "lax",
    )
    sent = {k: v[0] for k, v in parse_qs(urlsplit(start.authorize_url).query).items()}
    assert sent["code_challenge_method"] == "S256"
    assert sent["redirect_uri"] == SERVICE + CALLBACK_PATH
    assert sent["scope"] == "openid email"
    assert len(sent["state"]) == len(sent["nonce"]) == 32
    assert len(sent["code_challenge"]) == 43

    signed_in = await flow.callback(start, await flow.authorize(start.authorize_url))
    assert (signed_in.email, signed_in.subject) == ("ana@example.net", "oidc-user-1")
    assert (signed_in.issuer, signed_in.return_to) == (flow.idp.issuer, RETURN_TO)
    assert flow.face.token_refusals == []

    session = new_session(signed_in.email, "oidc", now=flow.clock.now(), ttl=timedelta(days=1),
                          idp=signed_in.issuer)  # fmt: skip
    value = session_cookie(KEYS, tenant_id=TENANT, issuer=SERVICE, session=session).value
    opened = open_session(KEYS, tenant_id=TENANT, issuer=SERVICE, value=value, now=flow.clock.now())
    assert opened is not None
    assert (opened.email, opened.method, opened.idp) == ("ana@example.net", "oidc", flow.idp.issuer)


async def test_public_client_names_itself(idp: IdentityProvider) -> None:
    """Without a client secret the code is redeemed as a public client (client_id, PKCE)."""
    async for flow in flow_with(idp, None):
        assert (await flow.sign_in_once()).email == "ana@example.net"
        assert flow.face.token_refusals == []


async def test_discovery_is_kept_ten_minutes(flow: Flow) -> None:
    """Two sign-ins read the configuration once; ten minutes later it is read again."""
    await flow.sign_in_once()
    await flow.sign_in_once()
    assert flow.face.discovery_requests == 1
    flow.clock.advance(timedelta(minutes=10))
    await flow.sign_in_once()
    assert flow.face.discovery_requests == 2


async def test_wrong_nonce(flow: Flow) -> None:
    """An ID token whose nonce is not this sign-in's is refused."""
    flow.face.id_token_overrides = {"nonce": "another-sign-in"}
    start = await flow.start()
    assert await flow.refused(start, await flow.authorize(start.authorize_url)) == "nonce"


async def test_unverified_email(flow: Flow) -> None:
    """email_verified false (or the string "true") is no sign-in."""
    for value in (False, "true"):
        flow.face.email_verified = value
        start = await flow.start()
        query = await flow.authorize(start.authorize_url)
        assert await flow.refused(start, query) == "email_verified"


async def test_wrong_audience(flow: Flow) -> None:
    """An ID token for another client is refused; so is another issuer or an expired one."""
    for overrides, check in (
        ({"aud": "someone-else"}, "aud"),
        ({"iss": "https://other.example"}, "iss"),
        ({"exp": int(flow.clock.now().timestamp()) - 61}, "exp"),
    ):
        flow.face.id_token_overrides = overrides
        start = await flow.start()
        assert await flow.refused(start, await flow.authorize(start.authorize_url)) == check


async def test_pkce_mismatch(flow: Flow) -> None:
    """A challenge that is not our verifier's (swapped on the way) fails at the token endpoint;
    a provider that ignores PKCE would have let it through."""
    start = await flow.start()
    swapped = start.authorize_url.replace("code_challenge=", "code_challenge=x", 1)
    assert await flow.refused(start, await flow.authorize(swapped)) == "token"
    assert flow.face.token_refusals == ["pkce"]

    flow.face.ignore_pkce = True
    start = await flow.start()
    swapped = start.authorize_url.replace("code_challenge=", "code_challenge=x", 1)
    assert (await flow.callback(start, await flow.authorize(swapped))).email == "ana@example.net"


async def test_state_mismatch(flow: Flow) -> None:
    """Another state, another browser's cookie, no cookie, or an expired one: refused before
    any token request."""
    start = await flow.start()
    query = await flow.authorize(start.authorize_url)
    other = await flow.start()
    assert await flow.refused(start, {**query, "state": "x" * 32}) == "state"
    assert await flow.refused(start, query, cookie=other.cookie.value) == "state"
    assert await flow.refused(start, query, cookie="") == "state"
    assert await flow.refused(start, {**query, "state": ""}) == "state"
    flow.clock.advance(timedelta(minutes=10))
    assert await flow.refused(start, query) == "state"
    assert flow.face.token_requests == 0


async def test_a_code_is_redeemed_once(flow: Flow) -> None:
    """The same callback twice: the provider refuses the second redemption."""
    start = await flow.start()
    query = await flow.authorize(start.authorize_url)
    assert (await flow.callback(start, query)).email == "ana@example.net"
    assert await flow.refused(start, query) == "token"
    assert flow.face.token_refusals == ["code"]


async def test_provider_refusals(flow: Flow) -> None:
    """The person declined, a wrong client secret, a failing token endpoint."""
    start = await flow.start()
    assert await flow.refused(start, {"error": "access_denied", "state": "x"}) == "denied"

    flow.face.client_secret = "another"
    start = await flow.start()
    assert await flow.refused(start, await flow.authorize(start.authorize_url)) == "token"
    assert flow.face.token_refusals == ["client"]
    flow.face.client_secret = SECRET

    flow.face.token_status = 503
    start = await flow.start()
    assert await flow.refused(start, await flow.authorize(start.authorize_url)) == "token"


async def test_id_token_of_a_key_not_published(flow: Flow) -> None:
    """An ID token signed by a key the provider's JWKS lacks finds no key."""
    flow.idp.signing_key = ProviderKey.generate("RS256")  # signs, but is not in `keys`
    start = await flow.start()
    assert await flow.refused(start, await flow.authorize(start.authorize_url)) == "keys"


async def test_unsafe_return_to_is_refused_before_anything(flow: Flow) -> None:
    """start refuses an open redirect without asking the provider anything."""
    for place in ("https://evil.example/", "//evil.example", "/admin"):
        with pytest.raises(OidcRefused) as refused:
            await flow.sign_in.start(tenant_id=TENANT, service_issuer=SERVICE, return_to=place)
        assert refused.value.code == "return_to"
    assert flow.face.discovery_requests == 0


async def test_discovery_must_name_the_issuer(idp: IdentityProvider) -> None:
    """A configuration whose issuer is not exactly the configured one is refused."""
    async for flow in flow_with(idp, SECRET):
        flow.sign_in.provider.settings = OidcSettings(idp.issuer + "/", CLIENT, SECRET)
        with pytest.raises(OidcRefused) as refused:
            await flow.start()
        assert refused.value.code == "discovery"


async def test_loopback_needs_the_allow_list(idp: IdentityProvider) -> None:
    """Without AUTHLEDGER_OUTBOUND_ALLOW the provider on 127.0.0.1 is never reached."""
    async for flow in flow_with(idp, SECRET, outbound=None):
        with pytest.raises(OidcRefused) as refused:
            await flow.start()
        assert refused.value.code == "discovery"
        assert "loopback" in refused.value.message
        assert flow.face.discovery_requests == 0


def test_code_challenge_is_rfc_7636_s256() -> None:
    """The RFC 7636 appendix B example."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

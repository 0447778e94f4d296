"""The v0.6 claim page beyond the conformance cases (test_v06_pages.py has those): a claim
made after an OpenID Connect sign-in records the provider as its `auth_method`; V5 and Deny
spend E8's buckets (429 pages with `Retry-After`, nothing written); without the v0.6 door the
pages are 404. Real Postgres, NATS, SMTP, and the test provider's OpenID face over HTTP."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_sign_in import OidcBrowser, oidc
from tests.support.app_client import running_service
from tests.support.backends import Backend
from tests.support.person import claim_path, decline, type_code
from tests.support.sign_in import forms_of
from tests.support.v06_claim import HINT, link_token, poll, service_auth
from tests.support.v06_door import v06_service, written_by

__all__ = ["oidc"]  # the fixture this module's test uses


async def test_claim_after_oidc_sign_in_records_the_provider(oidc: OidcBrowser) -> None:
    """Signed in at the OpenID provider as the hint's address, the person approves: the claim
    records `oidc:<issuer>`; the poll delivers."""
    svc = oidc.svc
    body = await service_auth(svc.client, HINT)  # the provider signs in ana@example.net
    link, code = link_token(body["claim"]["verification_uri"]), body["claim"]["user_code"]
    back = await oidc.back(await oidc.to_provider(claim_path(link)))
    assert back.status_code == 302, back.text
    page = await svc.client.get(claim_path(link))
    assert page.status_code == 200, page.text
    approve = forms_of(page.text)[0]
    approved = await svc.client.post(approve.path, data={**approve.fields, "user_code": code})
    assert approved.status_code == 200, approved.text
    claimed = (await written_by(svc, approved))[0]
    assert claimed["type"] == "registration.claimed"
    assert claimed["payload"]["auth_method"] == f"oidc:{oidc.face.provider.issuer}"
    assert (await poll(svc.client, body["claim_token"])).status_code == 200


async def test_v5_spends_e8s_buckets(backend: Backend, database_url: str, tmp_path: Path) -> None:
    """`complete_per_registration` (the registration found by the link's hash): over it, V5
    and Deny are 429 pages with `Retry-After`, and nothing is written."""
    limits = tmp_path / "limits.toml"
    limits.write_text('[default]\ncomplete_per_registration = "1/h"\n')
    async with v06_service(backend, database_url, RATE_LIMITS=str(limits)) as svc:
        body = await service_auth(svc.client)
        link, code = link_token(body["claim"]["verification_uri"]), body["claim"]["user_code"]
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        assert (await type_code(svc, link, wrong, HINT)).status_code == 401
        head = await svc.head()
        refused = await type_code(svc, link, code, HINT)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) > 0
        assert refused.headers["content-type"].startswith("text/html")
        assert (await decline(svc, link, HINT)).status_code == 429
        assert await svc.head() == head


async def test_claim_pages_need_the_door(backend: Backend, database_url: str) -> None:
    """Where the tenant keeps the v0.6 door shut, the claim page, V5 and Deny are 404 pages."""
    async with running_service(backend, database_url, DOORS="v1") as svc:
        for method, path in (("GET", claim_path("cvt_x")), ("POST", "/claim"),
                             ("POST", "/claim/deny")):  # fmt: skip
            answer = await svc.client.request(method, path)
            assert answer.status_code == 404, path
            assert answer.headers["content-type"].startswith("text/html"), path

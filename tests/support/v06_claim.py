"""The v0.6 claim as the agent drives it over HTTP (V1 service_auth, V2, the claim grant), and
the person's half as a browser drives the pages (tests/support/person.py): signed in as an
address through the mailed link, the person types the agent's `user_code` on the claim page
(V4, V5) or denies. `enter_code`, `refused_code` and `deny` keep the shape they had while they
stood in for the pages through the domain: a user id, or the refusal as a ProtocolError whose
code is the one the page's status says."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from service.domain.errors import ProtocolError
from service.tenancy.config import CLAIM_GRANT
from tests.support.app_client import Service
from tests.support.person import claimed_by, decline, type_code
from tests.support.v06_door import IDENTITY, TOKEN

CLAIM = "/agent/identity/claim"
HINT = "ana@example.net"


async def service_auth(client: httpx.AsyncClient, hint: str = HINT) -> dict[str, Any]:
    """V1 service_auth, which must succeed."""
    response = await client.post(IDENTITY, json={"type": "service_auth", "login_hint": hint})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def start(client: httpx.AsyncClient, claim_token: str, **body: str) -> httpx.Response:
    """V2."""
    return await client.post(CLAIM, json={"claim_token": claim_token, **body})


async def poll(client: httpx.AsyncClient, claim_token: str) -> httpx.Response:
    """V7, the claim grant."""
    return await client.post(TOKEN, data={"grant_type": CLAIM_GRANT, "claim_token": claim_token})


def link_token(verification_uri: str) -> str:
    """The `cvt_` link token inside `verification_uri`'s `return_to`."""
    return_to = parse_qs(urlsplit(verification_uri).query)["return_to"][0]
    return parse_qs(urlsplit(return_to).query)["claim_attempt_token"][0]


# The page's status, as the code the claim's rules refused with (410: by the page's title).
_REFUSALS = {400: "invalid_request", 401: "user_code_invalid", 403: "wrong_account",
             404: "not_found", 409: "previously_claimed", 410: "claim_expired",
             429: "rate_limited"}  # fmt: skip


def refusal_of(page: httpx.Response) -> ProtocolError:
    """The refusal a claim page answered, as the ProtocolError of its status."""
    code = _REFUSALS[page.status_code]
    if page.status_code == 410 and "This code no longer works" in page.text:
        code = "user_code_expired"
    return ProtocolError(code, f"the page answered {page.status_code}")  # type: ignore[arg-type]


async def enter_code(svc: Service, claim_token: str, link_token: str, code: str, email: str) -> str:
    """V5 by the person signed in as `email`: the claim's user id, or the ProtocolError of
    the page's answer (a wrong code's `claim.otp_failed` recorded first). `claim_token` is
    the agent's: the person never sees it (kept for the callers' sake)."""
    del claim_token
    page = await type_code(svc, link_token, code, email)
    if page.status_code != 200:
        raise refusal_of(page)
    assert "Approved" in page.text, page.text
    return await claimed_by(svc, link_token)


async def refused_code(
    svc: Service, claim_token: str, link_token: str, code: str, email: str
) -> ProtocolError:
    try:
        await enter_code(svc, claim_token, link_token, code, email)
    except ProtocolError as exc:
        return exc
    raise AssertionError("the code claimed")


async def deny(svc: Service, claim_token: str, link_token: str, email: str) -> None:
    """Deny on the claim page by the person signed in as `email` (`claim.attempt_denied`)."""
    del claim_token
    page = await decline(svc, link_token, email)
    if page.status_code != 200:
        raise refusal_of(page)
    assert "Declined" in page.text, page.text

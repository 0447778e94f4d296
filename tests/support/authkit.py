"""The v0.6 door's AuthKit profile as its e2e tests drive it (contract [PR28]): a service whose
default tenant opens the v0.6 door in that profile, the agent's calls over HTTP, and the person
who follows `verification_uri`, signs in by the mailed link, presses Authorize and reads the
code off the page, as a browser does (HTML and HTTP only)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.support.app_client import PUBLIC_URL, Service, running_service
from tests.support.backends import Backend
from tests.support.sign_in import follow_link, form_of, path_of, sign_in_link_of

IDENTITY = "/agent/identity"
CLAIM = "/agent/identity/claim"
COMPLETE = "/agent/identity/claim/complete"
_CODE = re.compile(r'<p class="code" id="user_code">([0-9]{6})</p>')


@asynccontextmanager
async def authkit_service(
    backend: Backend, database_url: str, **variables: str
) -> AsyncIterator[Service]:
    """The running service, both doors open, the v0.6 door in the AuthKit profile."""
    async with running_service(
        backend, database_url, DOORS="v1 v06", V06_PROFILE="authkit", **variables
    ) as svc:
        yield svc


def browser_of(svc: Service) -> httpx.AsyncClient:
    """A browser (its own cookies) on the service, beside the agent's client."""
    return httpx.AsyncClient(transport=svc.client._transport, base_url=PUBLIC_URL)


async def register(client: httpx.AsyncClient, **body: str) -> dict[str, Any]:
    """V1, which must succeed."""
    response = await client.post(IDENTITY, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def sign_in_at(svc: Service, browser: httpx.AsyncClient, verification_uri: str,
                     email: str) -> httpx.Response:  # fmt: skip
    """Open `verification_uri`, ask for a link for `email`, follow it: the confirm page."""
    expected = len(svc.sink.received) + 1
    login = await browser.get(path_of(verification_uri))
    assert login.status_code == 200, login.text
    form = form_of(login.text)
    sent = await browser.post(form.path, data={"email": email, **form.fields})
    assert sent.status_code == 200, sent.text
    back = await follow_link(browser, sign_in_link_of(await svc.mail(expected)))
    assert back.status_code == 302, back.text
    return await browser.get(path_of(back.headers["location"]))


async def authorize(browser: httpx.AsyncClient, page: httpx.Response) -> str:
    """Press Authorize on the confirm page: the code it shows."""
    assert page.status_code == 200, page.text
    form = form_of(page.text)
    shown = await browser.post(form.path, data=form.fields)
    assert shown.status_code == 200, shown.text
    found = _CODE.search(shown.text)
    assert found is not None, shown.text
    return found.group(1)


async def complete(client: httpx.AsyncClient, claim_token: str, code: str) -> httpx.Response:
    return await client.post(COMPLETE, json={"claim_token": claim_token, "user_code": code})


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(IDENTITY, json={"type": "refresh", "refresh_token": token})

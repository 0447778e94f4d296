"""The person's claim pages at the v0.6 door over HTTP (contract cases 13-15, 17, 18; V4, V5,
Deny; docs/design/v06-dialect.md, section 5.2): a person signs in through the mailed link
(the SMTP sink) and types the agent's code, as tests/support/person.py drives a browser.
The signed-in address must be the hint (403, O-J); wrong codes follow v1's limits (O-H); the
claim ends an anonymous registration's pre-claim tokens and assertion (O-F), and so does the
lock. Refused forms (CSRF, cross-site, malformed) write nothing. Real Postgres, NATS, SMTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from events.errors import ConcurrencyConflict
from service.commands.person_claim import none_left
from service.http.page_templates import CSP
from tests.support.app_client import PUBLIC_URL, Service
from tests.support.backends import Backend
from tests.support.person import (
    browser_for,
    claim_path,
    decline,
    open_claim_page,
    type_code,
)
from tests.support.sign_in import forms_of
from tests.support.v06_claim import HINT, link_token, poll, service_auth, start
from tests.support.v06_door import (
    assert_oauth_error,
    exchange,
    identify,
    me,
    token_for,
    v06_service,
    written_by,
)

OTHER = "bo@example.net"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with v06_service(backend, database_url) as service:
        yield service


def handles(body: dict[str, Any]) -> tuple[str, str]:
    """(link token, user_code) of a V1 service_auth answer's `claim`."""
    claim = body["claim"]
    return link_token(claim["verification_uri"]), claim["user_code"]


def assert_page(response: httpx.Response, status: int) -> None:
    """A page of the family: HTML, the CSP, never cached, no script."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text.lower()


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_claim_page_needs_session(svc: Service) -> None:
    """Case 13: without a session, GET /claim → 302 to /login returning to the page (the
    agent's verification_uri), and so do its forms; a malformed link → 404. Nothing
    written."""
    body = await service_auth(svc.client)
    link, code = handles(body)
    head = await svc.head()
    page = await svc.client.get(claim_path(link))
    assert page.status_code == 302
    assert page.headers["location"] == body["claim"]["verification_uri"]
    assert page.headers["location"] == (
        f"{PUBLIC_URL}/login?return_to={quote(claim_path(link), safe='')}"
    )
    posted = await svc.client.post(
        "/claim", data={"claim_attempt_token": link, "user_code": code, "csrf": "x" * 32}
    )
    assert (posted.status_code, posted.headers["location"]) == (302, page.headers["location"])
    for bad in ("", "cvt_<b>", "x" * 129):
        assert_page(await svc.client.get(f"/claim?claim_attempt_token={quote(bad)}"), 404)
    assert await svc.head() == head


async def test_wrong_account_403_on_page_and_submit(svc: Service) -> None:
    """Case 14 (O-J): signed in as another address than the hint, the page is 403 (with a way
    to sign out), and so are the code (even the right one) and Deny; nothing is written and
    the poll stays pending. The hint's owner then sees the form, signed in as themselves."""
    body = await service_auth(svc.client)
    link, code = handles(body)
    page = await open_claim_page(svc, link, OTHER)
    assert_page(page, 403)
    assert OTHER in page.text
    [sign_out] = forms_of(page.text)
    assert sign_out.path == "/logout"
    head = await svc.head()
    assert_page(await type_code(svc, link, code, OTHER), 403)
    assert_page(await decline(svc, link, OTHER), 403)
    assert await svc.head() == head
    assert_oauth_error(await poll(svc.client, body["claim_token"]), 400, "authorization_pending")
    mine = await open_claim_page(svc, link, HINT.upper())  # the index ignores case
    assert_page(mine, 200)
    assert f"signed in as <strong>{HINT.upper()}</strong>" in mine.text
    assert [f.path for f in forms_of(mine.text)] == ["/claim", "/claim/deny"]
    assert 'name="user_code"' in mine.text
    assert "No account has this address yet" in mine.text


async def test_wrong_code_401_poll_still_pending(svc: Service) -> None:
    """Case 15 (O-H): a wrong code → 401, the form again saying so, one `claim.otp_failed`
    (by the person, door v06); the poll stays pending. The fifth miss voids the code: the
    right one is then 410 `user_code_expired` and writes nothing."""
    body = await service_auth(svc.client)
    link, code = handles(body)
    page = await type_code(svc, link, wrong(code), HINT)
    assert_page(page, 401)
    assert "not the one your agent shows" in page.text
    assert [f.path for f in forms_of(page.text)] == ["/claim", "/claim/deny"]
    [failed] = await written_by(svc, page)
    assert failed["type"] == "claim.otp_failed"
    assert (failed["payload"]["reason"], failed["payload"]["code_voided"]) == ("mismatch", False)
    assert failed["metadata"]["actor"] == "user"
    assert (failed["metadata"]["door"], failed["metadata"]["dialect"]) == ("v06", "0.6.0")
    assert_oauth_error(await poll(svc.client, body["claim_token"]), 400, "authorization_pending")
    for _ in range(svc.tenant.otp_max_misses - 1):
        assert_page(await type_code(svc, link, wrong(code), HINT), 401)
    assert await svc.count("claim.otp_failed") == svc.tenant.otp_max_misses
    head = await svc.head()
    voided = await type_code(svc, link, code, HINT)
    assert_page(voided, 410)
    assert "This code no longer works" in voided.text
    assert await svc.head() == head


async def anonymous_with_token(svc: Service) -> tuple[dict[str, Any], str, str, str]:
    """An anonymous v0.6 registration, a pre-claim access token from its assertion, and a V2
    attempt for HINT: (V1 answer, token, link, code)."""
    anonymous = await identify(svc.client)
    token = await token_for(svc.client, anonymous["identity_assertion"])
    opened = await start(svc.client, anonymous["claim_token"], email=HINT)
    assert opened.status_code == 200, opened.text
    attempt = opened.json()["claim_attempt"]
    return anonymous, token, link_token(attempt["verification_uri"]), attempt["user_code"]


async def test_pre_claim_token_dies(svc: Service) -> None:
    """Case 17 (O-F): the right code → 200 "Approved"; the claim ends the pre-claim access
    token in the same request (`credential.revoked`, reason `claimed`) → 401 at the API;
    the claim records how the person signed in and makes their user; the poll delivers."""
    anonymous, token, link, code = await anonymous_with_token(svc)
    assert (await me(svc.client, token)).status_code == 200
    page = await type_code(svc, link, code, HINT)
    assert_page(page, 200)
    assert "Approved" in page.text
    written = await written_by(svc, page)
    assert [e["type"] for e in written] == [
        "registration.claimed", "credential.revoked", "user.created",
    ]  # fmt: skip
    claimed, revoked, _ = (e["payload"] for e in written)
    assert (claimed["auth_method"], claimed["credential_id"]) == ("email_link", None)
    assert revoked["reason"] == "claimed"
    assert {e["metadata"]["actor"] for e in written} == {"user"}
    assert (await me(svc.client, token)).status_code == 401
    row = await svc.row("registrations", "registration_id", anonymous["registration_id"])
    assert (row["status"], row["user_id"]) == ("claimed", claimed["user_id"])
    delivered = await poll(svc.client, anonymous["claim_token"])
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["scope"] == " ".join(svc.tenant.post_claim_scopes)
    again = await open_claim_page(svc, link, HINT)  # the link that claimed it, reopened
    assert_page(again, 200)
    assert "Already approved" in again.text
    assert forms_of(again.text) == []
    head = await svc.head()
    assert_page(await type_code(svc, link, code, HINT), 409)
    assert await svc.head() == head


async def test_pre_claim_assertion_invalid_grant(svc: Service) -> None:
    """Case 18 (O-F): after the claim, the pre-claim assertion → `invalid_grant` (its
    generation is behind the claim); before it, it exchanged."""
    anonymous, _, link, code = await anonymous_with_token(svc)
    assert (await exchange(svc.client, anonymous["identity_assertion"])).status_code == 200
    assert_page(await type_code(svc, link, code, HINT), 200)
    refused = await exchange(svc.client, anonymous["identity_assertion"])
    assert_oauth_error(refused, 400, "invalid_grant")


async def test_claim_racing_exchanges_leaves_no_pre_claim_token(svc: Service) -> None:
    """Design 10.2: exchanges of the pre-claim assertion sent while the code is typed are
    refused or end with the claim: no pre-claim token stays active once it is recorded. The
    claim's `also` step is what sends a claim that missed one round again: under the lock it
    refuses while an active credential of the registration is left, and passes once none is."""
    anonymous, _, link, code = await anonymous_with_token(svc)
    check = none_left(svc.tenant.tenant_id, anonymous["registration_id"])
    async with svc.resources.pool.acquire() as conn:
        with pytest.raises(ConcurrencyConflict):
            await check(cast(asyncpg.Connection, conn))
    results = await asyncio.gather(
        type_code(svc, link, code, HINT),
        *(exchange(svc.client, anonymous["identity_assertion"]) for _ in range(6)),
    )
    assert results[0].status_code == 200, results[0].text
    for answer in results[1:]:
        assert answer.status_code in (200, 400), answer.text
        if answer.status_code == 200:
            assert (await me(svc.client, answer.json()["access_token"])).status_code == 401
    active = await svc.resources.pool.fetchval(
        "SELECT count(*) FROM credentials WHERE registration_id = $1 AND status = 'active'",
        anonymous["registration_id"],
    )
    assert active == 0
    async with svc.resources.pool.acquire() as conn:
        await check(cast(asyncpg.Connection, conn))


async def test_lock_revokes_pre_claim_tokens(backend: Backend, database_url: str) -> None:
    """O-H with the registration's limit (CLAIM_MAX_MISSES): the miss that locks it ends the
    registration and its pre-claim access token (reason `registration_expired`, as v1's
    lock ends its key); the poll then says `expired_token`, and the link is gone (404)."""
    async with v06_service(backend, database_url, CLAIM_MAX_MISSES="2") as svc:
        anonymous, token, link, code = await anonymous_with_token(svc)
        assert_page(await type_code(svc, link, wrong(code), HINT), 401)
        locked = await type_code(svc, link, wrong(code), HINT)
        assert locked.status_code == 401, locked.text
        assert [e["type"] for e in await written_by(svc, locked)] == [
            "claim.otp_failed", "claim.attempt_locked", "registration.expired",
            "credential.revoked",
        ]  # fmt: skip
        revoked = (await written_by(svc, locked))[-1]["payload"]
        assert revoked["reason"] == "registration_expired"
        assert (await me(svc.client, token)).status_code == 401
        assert_oauth_error(await poll(svc.client, anonymous["claim_token"]), 400, "expired_token")
        assert_page(await open_claim_page(svc, link, HINT), 404)


async def test_deny_over_the_page(svc: Service) -> None:
    """Deny → 200 "Declined", `claim.attempt_denied` by the person; the link is then 404 and
    the poll `access_denied`."""
    body = await service_auth(svc.client)
    link, _ = handles(body)
    page = await decline(svc, link, HINT)
    assert_page(page, 200)
    assert "Declined" in page.text
    [denied] = await written_by(svc, page)
    assert (denied["type"], denied["metadata"]["actor"]) == ("claim.attempt_denied", "user")
    assert_page(await open_claim_page(svc, link, HINT), 404)
    assert_oauth_error(await poll(svc.client, body["claim_token"]), 400, "access_denied")


async def test_refused_forms_write_nothing(svc: Service) -> None:
    """CSRF missing or wrong, or another purpose's token → 400; a cross-site post (Sec-Fetch-
    Site or a foreign Origin) → 403; a code that is not six digits, an extra field, a field
    twice or JSON → 400; a body past 16 KiB → 413; none writes an event, and the right code
    still claims after them."""
    body = await service_auth(svc.client)
    link, code = handles(body)
    page = await open_claim_page(svc, link, HINT)
    approve, deny_form = forms_of(page.text)
    browser = browser_for(svc, HINT)
    fields = {**approve.fields, "user_code": code}
    head = await svc.head()
    tries: list[tuple[dict[str, str] | str, dict[str, str], int]] = [
        ({"claim_attempt_token": link, "user_code": code}, {}, 400),
        ({**fields, "csrf": "0" * 32}, {}, 400),
        ({**fields, "csrf": deny_form.fields["csrf"]}, {}, 400),
        (fields, {"sec-fetch-site": "cross-site"}, 403),
        (fields, {"origin": "https://evil.example"}, 403),
        ({**fields, "user_code": "12345"}, {}, 400),
        ({**fields, "user_code": "12345a"}, {}, 400),
        ({**fields, "more": "1"}, {}, 400),
        (f"claim_attempt_token={link}&user_code={code}&user_code={code}&csrf="
         + approve.fields["csrf"], {"content-type": "application/x-www-form-urlencoded"}, 400),
    ]  # fmt: skip
    for data, headers, status in tries:
        if isinstance(data, str):
            answer = await browser.post("/claim", content=data, headers=headers)
        else:
            answer = await browser.post("/claim", data=data, headers=headers)
        assert_page(answer, status)
    denied = await browser.post("/claim/deny", data={**deny_form.fields, "csrf": "0" * 32})
    assert_page(denied, 400)
    assert_page(await browser.post("/claim", json=fields), 400)  # a form, not JSON
    form_type = {"content-type": "application/x-www-form-urlencoded"}
    huge = await browser.post("/claim", content=b"user_code=" + b"1" * 17_000, headers=form_type)
    assert_page(huge, 413)
    assert await svc.head() == head
    assert_page(await browser.post("/claim", data=fields), 200)

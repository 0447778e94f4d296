"""The person's sign-in at the v0.6 door (contract V3) over HTTP, against real Postgres, NATS
and an SMTP sink: the mailed link (single use, expiry, CSRF, cross-site posts, `return_to`,
cookie flags, the same answer for any address, rate limits), OpenID Connect against the test
provider's OpenID face, signing out, and erasure of the links. No route here writes an event:
each test ends with the log's head where it started.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from service.crypto.pii import Sealer
from service.http.app import create_app
from service.http.page_templates import PAGE_HEADERS
from service.signin.keys import SignInKeys
from service.signin.sessions import Session, open_session
from tests.e2e.test_erasure import _claimed_key
from tests.support.app_client import (
    ADMIN_TOKEN,
    CLIENT_IP,
    PUBLIC_URL,
    SECRET_KEY,
    Service,
    running_service,
    settings_for,
)
from tests.support.backends import Backend
from tests.support.idp import IdentityProvider
from tests.support.oidc_face import OidcFace
from tests.support.sign_in import (
    RETURN_TO,
    ask_for_link,
    follow_link,
    form_of,
    forms_of,
    login_path,
    path_of,
    sign_in_link_of,
    token_of,
)

V06 = {"DOORS": "v1 v06"}
KEYS = SignInKeys.from_secret(SECRET_KEY)
SESSION = "__Host-authledger_session"  # PUBLIC_URL is https
PRE_SESSION = "__Host-authledger_csrf"
EMAIL = "Ana.Lopez@Example.net"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CLIENT = "authledger-pages"
CLIENT_SECRET = "pages secret"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url, **V06) as s:
        yield s


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers of the answer, by cookie name."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def session_of(svc: Service, value: str | None, issuer: str = PUBLIC_URL) -> Session | None:
    return open_session(KEYS, tenant_id="default", issuer=issuer, value=value,
                        now=svc.clock.now())  # fmt: skip


async def signed_in(svc: Service, browser: httpx.AsyncClient, email: str = EMAIL) -> None:
    """Sign `browser` in by mail (the next mail the sink gets is that link's)."""
    expected = len(svc.sink.received) + 1
    assert (await ask_for_link(browser, email)).status_code == 200
    answer = await follow_link(browser, sign_in_link_of(await svc.mail(expected)))
    assert answer.status_code == 302, answer.text


def another_browser(svc: Service) -> httpx.AsyncClient:
    """A second browser (its own cookies) on the same service."""
    return httpx.AsyncClient(transport=svc.client._transport, base_url=PUBLIC_URL)


async def links(svc: Service) -> int:
    return int(await svc.resources.pool.fetchval("SELECT count(*) FROM sign_in_links"))


async def test_email_link_signs_in_once_and_writes_no_event(svc: Service) -> None:
    """Form, mail, link page, button: a session for the address, back at `return_to`; the
    link's token is stored only hashed, fetching the page uses nothing, and no event is
    written."""
    head = await svc.head()
    page = await svc.client.get(login_path())
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text
    pre = set_cookies(page)[PRE_SESSION]
    assert all(flag in pre for flag in ("HttpOnly", "SameSite=lax", "Secure", "Path=/"))
    form = form_of(page.text)
    assert (form.path, form.fields["return_to"]) == ("/login", RETURN_TO)

    sent = await svc.client.post("/login", data={"email": EMAIL, **form.fields})
    assert sent.status_code == 200, sent.text
    assert "Check your inbox" in sent.text
    mail = await svc.mail(1)
    assert mail.rcpt_tos == (EMAIL,)
    assert str(mail.message["Subject"]) == "Your sign-in link"
    assert re.fullmatch(r"<sgn_[A-Za-z0-9_-]{22}@authledger>", mail.message_id)
    link = sign_in_link_of(mail)
    token = token_of(link)
    assert link == f"{PUBLIC_URL}/login/email?token={token}"
    assert token.startswith("lgt_")
    row = await svc.row("sign_in_links", "link_id", mail.message_id[1 : -len("@authledger>")])
    assert token not in str(row)
    assert EMAIL.lower() not in str(row).lower()
    assert row["used_at"] is None

    for _ in range(2):  # a link scanner fetching the page twice uses nothing
        shown = await svc.client.get(path_of(link))
        assert shown.status_code == 200
        assert "A…@Example.net" in shown.text
        assert EMAIL not in shown.text
    assert (await svc.row("sign_in_links", "token_hash", row["token_hash"]))["used_at"] is None

    done = await follow_link(svc.client, link)
    assert done.status_code == 302
    assert done.headers["location"] == PUBLIC_URL + RETURN_TO
    cookie = set_cookies(done)[SESSION]
    assert all(flag in cookie for flag in ("HttpOnly", "SameSite=lax", "Secure", "Path=/"))
    assert "Max-Age=86400" in cookie
    session = session_of(svc, svc.client.cookies.get(SESSION))
    assert session is not None
    assert (session.email, session.method, session.idp) == (EMAIL, "email_link", None)
    assert (await svc.row("sign_in_links", "token_hash", row["token_hash"]))["used_at"]

    again = await svc.client.get(login_path())  # signed in: straight back
    assert (again.status_code, again.headers["location"]) == (302, PUBLIC_URL + RETURN_TO)
    assert await svc.head() == head


async def test_link_works_once_and_until_its_time(svc: Service) -> None:
    """A used link answers 410 on GET and POST; a link past SIGN_IN_LINK_TTL too; an unknown
    token 404. The next link made prunes the ended ones, their mail and their keys."""
    await ask_for_link(svc.client, EMAIL)
    first = sign_in_link_of(await svc.mail(1))
    page = form_of((await svc.client.get(path_of(first))).text)
    assert (await svc.client.post(page.path, data=page.fields)).status_code == 302
    used = await svc.client.post(page.path, data=page.fields)
    assert (used.status_code, "already used" in used.text) == (410, True)
    assert (await svc.client.get(path_of(first))).status_code == 410

    async with another_browser(svc) as browser:
        await ask_for_link(browser, "other@example.net")
        late = sign_in_link_of(await svc.mail(2))
        late_form = form_of((await browser.get(path_of(late))).text)
        svc.clock.advance(timedelta(seconds=601))
        assert (await browser.get(path_of(late))).status_code == 410
        expired = await browser.post(late_form.path, data=late_form.fields)
        assert (expired.status_code, "expired" in expired.text) == (410, True)
        for token in ("lgt_" + "A" * 32, "nonsense", ""):
            assert (await browser.get(f"/login/email?token={token}")).status_code == 404
        unknown = await browser.post("/login/email", data={**late_form.fields, "token": "lgt_x"})
        assert unknown.status_code == 404
        assert browser.cookies.get(SESSION) is None
        ended = [r["link_id"] for r in await svc.resources.pool.fetch(
            "SELECT link_id FROM sign_in_links")]  # fmt: skip
        assert len(ended) == 2
        await ask_for_link(browser, "third@example.net")  # prunes the ended links on its way
    pool = svc.resources.pool
    assert await links(svc) == 1
    assert await pool.fetchval(
        "SELECT count(*) FROM mail_outbox WHERE attempt_id = ANY($1)", ended) == 0  # fmt: skip
    keys = "SELECT length(wrapped_key) AS n FROM subject_keys WHERE subject_id = ANY($1)"
    emptied = await pool.fetch(keys, ended)
    assert [r["n"] for r in emptied] == [0, 0]


async def test_csrf_missing_or_wrong_is_refused(svc: Service) -> None:
    """POST /login and /login/email without the form's token, with a wrong one, or without
    the pre-session cookie it is bound to: 400 pages, no link made, no mail, the link kept."""
    form = form_of((await svc.client.get(login_path())).text)
    wrong = {**form.fields, "csrf": "0" * 32}
    for data in (
        {"email": EMAIL, "return_to": RETURN_TO},  # no csrf field
        {"email": EMAIL, **wrong},
        {"email": EMAIL, **form.fields, "extra": "x"},
    ):
        refused = await svc.client.post("/login", data=data)
        assert refused.status_code == 400, data
    async with another_browser(svc) as other:
        stolen = await other.post("/login", data={"email": EMAIL, **form.fields})  # no cookie
        assert stolen.status_code == 400
    assert await links(svc) == 0

    await ask_for_link(svc.client, EMAIL)
    link = sign_in_link_of(await svc.mail(1))
    button = form_of((await svc.client.get(path_of(link))).text)
    bad = await svc.client.post(button.path, data={**button.fields, "csrf": form.fields["csrf"]})
    assert bad.status_code == 400  # the /login form's token is not this form's
    assert (await svc.client.post(button.path, data=button.fields)).status_code == 302
    assert len(svc.sink.received) == 1


async def test_cross_site_posts_are_refused(svc: Service) -> None:
    """A post the browser marks cross-site, or from another Origin, is a 403 before the form
    is read; the service's own Origin passes."""
    form = form_of((await svc.client.get(login_path())).text)
    data = {"email": EMAIL, **form.fields}
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"},
                    {"Origin": "null"}):  # fmt: skip
        refused = await svc.client.post("/login", data=data, headers=headers)
        assert refused.status_code == 403, headers
        assert (await svc.client.post("/logout", data={"csrf": "x"}, headers=headers)
                ).status_code == 403  # fmt: skip
    assert await links(svc) == 0
    ok = await svc.client.post(
        "/login", data=data, headers={"Origin": PUBLIC_URL, "Sec-Fetch-Site": "same-origin"}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "return_to",
    [
        "https://evil.example/claim?x=1",
        "//evil.example/claim?x=1",
        "/claim?next=//evil.example",
        "/\\evil.example/claim?x",
        "/claimant",
        "/admin/erasures",
        "javascript:alert(1)",
        "/claim?" + "a" * 600,
    ],
)
async def test_return_to_outside_the_claim_page_is_refused(svc: Service, return_to: str) -> None:
    """No open redirect: a `return_to` that is not a /claim path is a 400 page at GET /login and
    at POST /login (nothing mailed), and never a Location."""
    page = await svc.client.get(login_path(return_to))
    assert page.status_code == 400
    assert "location" not in page.headers
    good = form_of((await svc.client.get(login_path())).text)
    posted = await svc.client.post(
        "/login", data={"email": EMAIL, **good.fields, "return_to": return_to}
    )
    assert posted.status_code == 400
    assert "location" not in posted.headers
    assert await links(svc) == 0


async def test_cookies_are_not_secure_on_loopback(backend: Backend, database_url: str) -> None:
    """With an http://127.0.0.1 issuer the cookies keep their plain names, HttpOnly and Lax,
    without Secure (a browser would drop them over http)."""
    issuer = "http://127.0.0.1:8000"
    async with running_service(backend, database_url, PUBLIC_URL=issuer, **V06) as svc:
        settings = settings_for(backend, database_url, PUBLIC_URL=issuer, **V06)
        app = create_app(settings, resources=svc.resources)
        transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 50124))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=issuer) as browser:
            page = await browser.get(login_path())
            pre = set_cookies(page)["authledger_csrf"]
            await ask_for_link(browser, EMAIL)
            done = await follow_link(browser, sign_in_link_of(await svc.mail(1)))
        assert done.headers["location"] == issuer + RETURN_TO
        cookie = set_cookies(done)["authledger_session"]
        for header in (pre, cookie):
            assert "HttpOnly" in header
            assert "SameSite=lax" in header
            assert "Secure" not in header
        value = cookie.split(";")[0].split("=", 1)[1]
        assert session_of(svc, value, issuer) is not None


async def test_same_answer_whoever_has_the_address(svc: Service) -> None:
    """A user's address and an address nobody has get the same page (but for the address) and
    each its mail: POST /login looks nobody up."""
    await _claimed_key(svc, EMAIL, 1)
    answers = []
    for email in (EMAIL, "nobody@example.net"):
        sent = await ask_for_link(svc.client, email)
        assert sent.status_code == 200
        answers.append(re.sub(r"<time[^>]*>.*?</time>", "", sent.text.replace(email, "ADDR")))
    assert answers[0] == answers[1]
    assert {m.rcpt_tos for m in await svc.sink.wait_for(3)} >= {(EMAIL,), ("nobody@example.net",)}


async def test_rate_limits(backend: Backend, database_url: str, tmp_path: Path) -> None:
    """POST /login: 5 links to one address (`mail_per_recipient`), 10 per client address
    (`sign_in_per_ip`); POST /login/email within `sign_in_use_per_ip`; each refusal a 429 page
    with Retry-After, and nothing made for it."""
    limits = tmp_path / "limits.toml"
    limits.write_text('[default]\nsign_in_use_per_ip = "2/h"\n')
    async with running_service(backend, database_url, RATE_LIMITS=str(limits), **V06) as svc:
        form = form_of((await svc.client.get(login_path())).text)

        async def ask(email: str) -> httpx.Response:
            return await svc.client.post("/login", data={"email": email, **form.fields})

        assert [(await ask(EMAIL)).status_code for _ in range(5)] == [200] * 5
        full = await ask(EMAIL)
        assert (full.status_code, int(full.headers["retry-after"]) > 0) == (429, True)
        assert full.headers["content-type"].startswith("text/html")
        assert [(await ask(f"n{i}@example.net")).status_code for i in range(5)] == [200] * 5
        assert (await ask("eleventh@example.net")).status_code == 429
        assert await links(svc) == 10

        button = form_of((await svc.client.get(path_of(sign_in_link_of(await svc.mail(1))))).text)
        bogus = {**button.fields, "token": "lgt_" + "B" * 32}
        assert (await svc.client.post(button.path, data=bogus)).status_code == 404
        assert (await svc.client.post(button.path, data=button.fields)).status_code == 302
        refused = await svc.client.post(button.path, data=bogus)
        assert (refused.status_code, "retry-after" in refused.headers) == (429, True)


async def test_routes_need_the_door_and_the_method(backend: Backend, database_url: str) -> None:
    """Without the v0.6 door every sign-in route is a 404 page; with SIGN_IN=oidc only, the
    e-mail routes are."""
    async with running_service(backend, database_url, DOORS="v1") as svc:
        for method, path in (("GET", login_path()), ("POST", "/login"), ("GET", "/login/email"),
                             ("POST", "/login/email"), ("GET", "/login/oidc"),
                             ("GET", "/login/oidc/callback"), ("POST", "/logout")):  # fmt: skip
            answer = await svc.client.request(method, path)
            assert answer.status_code == 404, path
            assert answer.headers["content-type"].startswith("text/html"), path
    async with IdentityProvider(alg="RS256") as idp:
        idp.oidc(CLIENT)
        async with running_service(backend, database_url, SIGN_IN="oidc", **_oidc(idp)) as svc:
            page = await svc.client.get(login_path())
            assert page.status_code == 200
            assert forms_of(page.text) == []
            assert "/login/oidc?return_to=" in page.text
            assert (await svc.client.post("/login", data={})).status_code == 404
            assert (await svc.client.get("/login/email?token=lgt_x")).status_code == 404


async def test_other_methods_are_405_pages(svc: Service) -> None:
    """A method a sign-in route does not take is refused before routing: a 405 page of the
    family (HTML, its CSP and headers, `Allow`), where the JSON APIs beside it keep their
    JSON 405; nothing written."""
    for method, path in (("PUT", "/login"), ("DELETE", "/login/email"), ("POST", "/login/oidc"),
                         ("PATCH", "/login/oidc/callback"), ("GET", "/logout"),
                         ("PUT", "/login/")):  # fmt: skip
        page = await svc.client.request(method, path)
        assert page.status_code == 405, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert {k.lower(): v for k, v in PAGE_HEADERS.items()}.items() <= page.headers.items()
        assert page.headers["allow"], path
        assert "Method Not Allowed" in page.text
    for path in ("/agent/identity", "/agent/auth", "/api/me"):
        answer = await svc.client.request("PUT", path)
        assert answer.status_code == 405, path
        assert answer.headers["content-type"] == "application/json", path
        assert answer.json()["error"] == "method_not_allowed"
    assert await svc.head() == 0


def _oidc(idp: IdentityProvider, secret: str | None = None) -> dict[str, str]:
    settings = {
        "OIDC_ISSUER": idp.issuer, "OIDC_CLIENT_ID": CLIENT, "OIDC_NAME": "Example SSO",
        "JWKS_ALLOW_LOOPBACK_HTTP": "true", **V06,
    }  # fmt: skip
    return settings | ({"OIDC_CLIENT_SECRET": secret} if secret else {})


class OidcBrowser:
    """The person's browser at the service and at the provider."""

    def __init__(self, svc: Service, face: OidcFace, provider: httpx.AsyncClient) -> None:
        self.svc, self.face, self.provider = svc, face, provider

    async def to_provider(self, return_to: str = RETURN_TO) -> str:
        """GET /login/oidc: the provider's authorization URL it redirects to."""
        start = await self.svc.client.get(login_path(return_to).replace("/login", "/login/oidc"))
        assert start.status_code == 302, start.text
        assert "authledger_oidc" in str(set_cookies(start))
        return str(start.headers["location"])

    async def back(self, authorize_url: str, **query_changes: str) -> httpx.Response:
        """The provider's redirect followed back to our callback (query edited if asked)."""
        answer = await self.provider.get(authorize_url)
        assert answer.status_code == 302, answer.text
        location = urlsplit(answer.headers["location"])
        assert location.path == "/login/oidc/callback"
        query = {k: v[0] for k, v in parse_qs(location.query).items()} | query_changes
        return await self.svc.client.get(location.path, params=query)


@pytest.fixture
async def oidc(backend: Backend, database_url: str) -> AsyncIterator[OidcBrowser]:
    async with IdentityProvider(alg="RS256") as idp:
        face = idp.oidc(CLIENT, CLIENT_SECRET)
        variables = {"SIGN_IN": "email oidc", **_oidc(idp, CLIENT_SECRET)}
        async with running_service(backend, database_url, **variables) as svc:
            face.now = svc.clock.now
            async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as provider:
                yield OidcBrowser(svc, face, provider)


async def test_oidc_sign_in(oidc: OidcBrowser) -> None:
    """The page links to the provider; there and back: a session for the provider's verified
    address, the state cookie cleared, no event."""
    svc, head = oidc.svc, await oidc.svc.head()
    page = await svc.client.get(login_path())
    assert "Sign in with Example SSO" in page.text
    url = await oidc.to_provider()
    sent = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert (sent["client_id"], sent["code_challenge_method"]) == (CLIENT, "S256")
    assert sent["redirect_uri"] == PUBLIC_URL + "/login/oidc/callback"
    back = await oidc.back(url)
    assert back.status_code == 302, back.text
    assert back.headers["location"] == PUBLIC_URL + RETURN_TO
    assert "Max-Age=0" in set_cookies(back)["__Host-authledger_oidc"]
    session = session_of(svc, svc.client.cookies.get(SESSION))
    assert session is not None
    assert (session.email, session.method, session.idp) == (
        "ana@example.net", "oidc", oidc.face.provider.issuer)  # fmt: skip
    assert oidc.face.token_refusals == []
    assert await svc.head() == head


@pytest.mark.parametrize(
    ("knob", "check"),
    [
        ({"id_token_overrides": {"nonce": "not-this-one"}}, "nonce"),
        ({"email_verified": False}, "email_verified"),
        ({"id_token_overrides": {"aud": "someone-else"}}, "aud"),
    ],
)
async def test_oidc_refusals(oidc: OidcBrowser, knob: dict[str, object], check: str) -> None:
    """A wrong nonce, an unverified address, another audience: a 400 page naming the check, no
    session, the state cookie cleared."""
    for name, value in knob.items():
        setattr(oidc.face, name, value)
    back = await oidc.back(await oidc.to_provider())
    assert back.status_code == 400
    assert f"(check: {check})" in back.text
    assert SESSION not in set_cookies(back)
    assert "Max-Age=0" in set_cookies(back)["__Host-authledger_oidc"]
    assert oidc.svc.client.cookies.get(SESSION) is None


async def test_oidc_pkce_and_state_mismatch(oidc: OidcBrowser) -> None:
    """A code asked for with another PKCE challenge fails at the token endpoint; a callback
    whose state is not this browser's fails before any request; a bad return_to never
    leaves."""
    url = await oidc.to_provider()
    tampered = url.replace("code_challenge=", "code_challenge=x")
    back = await oidc.back(tampered)
    assert (back.status_code, "(check: token)" in back.text) == (400, True)
    assert oidc.face.token_refusals == ["pkce"]

    state = await oidc.back(await oidc.to_provider(), state="A" * 32)
    assert (state.status_code, "(check: state)" in state.text) == (400, True)
    assert oidc.face.token_requests == 1  # the state was refused before the code was redeemed
    assert oidc.svc.client.cookies.get(SESSION) is None
    bad = await oidc.svc.client.get("/login/oidc?return_to=https://evil.example/claim?x")
    assert bad.status_code == 400
    assert "location" not in bad.headers


async def test_logout(svc: Service) -> None:
    """Signed in, GET /login shows who and a sign-out form; its post (with its token) clears
    the session; a wrong token or another site's post does not."""
    await signed_in(svc, svc.client)
    page = await svc.client.get("/login")
    assert EMAIL in page.text
    form = form_of(page.text)
    assert form.path == "/logout"
    bad = await svc.client.post("/logout", data={"csrf": "0" * 32})
    assert bad.status_code == 400
    assert session_of(svc, svc.client.cookies.get(SESSION)) is not None
    out = await svc.client.post("/logout", data=form.fields)
    assert (out.status_code, out.headers["location"]) == (302, PUBLIC_URL + "/login")
    assert "Max-Age=0" in set_cookies(out)[SESSION]
    assert svc.client.cookies.get(SESSION) is None
    again = await svc.client.get(login_path())
    assert again.status_code == 200
    assert forms_of(again.text)
    assert "Not signed in" in (await svc.client.get("/login")).text


async def test_erasure_deletes_the_links(svc: Service) -> None:
    """Erasing an address deletes its sign-in links and their mail, destroys their keys and
    writes no event when nothing else held the person; another address's link stays."""
    await ask_for_link(svc.client, EMAIL)
    await ask_for_link(svc.client, "kept@example.net")
    await svc.sink.wait_for(2)
    pool = svc.resources.pool
    [link_id] = [r["link_id"] for r in await pool.fetch(
        "SELECT link_id FROM sign_in_links WHERE email_index = $1",
        Sealer(SECRET_KEY).blind_index(EMAIL))]  # fmt: skip
    head = await svc.head()
    erased = await svc.client.post("/admin/erasures", json={"email": EMAIL.upper()}, headers=ADMIN)
    assert erased.status_code == 200, erased.text
    assert erased.json()["sign_in_links"] == [link_id]
    assert erased.json()["users"] == []
    assert await svc.head() == head
    assert (
        await pool.fetchval("SELECT count(*) FROM sign_in_links WHERE link_id = $1", link_id) == 0
    )
    assert (
        await pool.fetchval("SELECT count(*) FROM mail_outbox WHERE attempt_id = $1", link_id) == 0
    )
    key = await pool.fetchrow("SELECT length(wrapped_key) AS n, erased_at FROM subject_keys "
                              "WHERE subject_id = $1", link_id)  # fmt: skip
    assert key is not None
    assert (key["n"], key["erased_at"] is not None) == (0, True)
    assert await links(svc) == 1
    gone = await svc.client.post("/admin/erasures", json={"email": EMAIL}, headers=ADMIN)
    assert gone.status_code == 404

"""The revocation webhook (`subscriber/webhook.py`) driven as an ASGI app, with SETs built by
the service's own `set_claims` and the issuer's JWKS served over real HTTP on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.push.sets import CredentialEnded, set_claims
from subscriber.state import State
from subscriber.webhook import SET_MEDIA_TYPE, RevocationWebhook, WebhookConfig
from subscriber.wire import Revocation, sign, token_prefix
from tests.support.idp import IdentityProvider

AUDIENCE = "https://rs.example/events"
SECRET = "whsec_" + "Q" * 26
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
API_KEY = "ak_live_the_revoked_key_0123456789"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def err(self) -> str:
        return str(json.loads(self.body)["err"])


async def call(
    app: RevocationWebhook,
    body: str | bytes = b"",
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    chunks: list[bytes] | None = None,
) -> Answer:
    """One HTTP request through the ASGI interface, as a server would make it."""
    raw = body.encode() if isinstance(body, str) else body
    if headers is None:
        headers = {"content-type": SET_MEDIA_TYPE, "authorization": f"Bearer {SECRET}"}
        if chunks is None:
            headers["content-length"] = str(len(raw))
    pieces = chunks if chunks is not None else [raw]
    inbox: list[dict[str, Any]] = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": "/events", "raw_path": b"/events", "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 50000),
    }  # fmt: skip
    await app(scope, receive, send)
    start, end = sent
    assert start["type"] == "http.response.start"
    answered = {k.decode(): v.decode() for k, v in start["headers"]}
    assert int(answered["content-length"]) == len(end["body"])
    return Answer(start["status"], answered, end["body"])


def ended(
    credential_id: str = "cred_revokedkey0000000001", *, kind: str = "api_key",
    change: str = "revoked", reason: str = "operator",
) -> CredentialEnded:  # fmt: skip
    return CredentialEnded(
        position=42, event_id=uuid.uuid4(), credential_id=credential_id, credential_kind=kind,
        change=change, reason=reason, occurred_at=NOW,  # type: ignore[arg-type]
    )  # fmt: skip


def claims_of(idp: IdentityProvider, what: CredentialEnded, **changes: Any) -> dict[str, Any]:
    """The claims authledger's push worker sends for `what` (service/push/sets.py)."""
    made = set_claims(
        what, issuer=idp.issuer, audience=AUDIENCE, subscription_id="sub_test", now=NOW
    )
    return {**made, **changes}


def signed(idp: IdentityProvider, claims: dict[str, Any], **header: Any) -> str:
    return idp.sign(claims, header={**idp.header("secevent+jwt"), **header})


def config_for(idp: IdentityProvider, path: Path | None, **changes: Any) -> WebhookConfig:
    fields: dict[str, Any] = {"issuer": idp.issuer, "audience": AUDIENCE, "secret": SECRET,
                              "state_path": path, **changes}  # fmt: skip
    return WebhookConfig(**fields)


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    """The issuer: an EdDSA key published at /.well-known/jwks.json on loopback."""
    async with IdentityProvider(alg="EdDSA") as provider:
        yield provider


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "revoked.db"


@pytest.fixture
async def hook(idp: IdentityProvider, state_path: Path) -> AsyncIterator[RevocationWebhook]:
    app = RevocationWebhook(config_for(idp, state_path))
    try:
        yield app
    finally:
        await app.aclose()


async def test_an_api_key_revocation_is_taken_and_a_redelivery_changes_nothing(
    hook: RevocationWebhook, idp: IdentityProvider, state_path: Path
) -> None:
    """202 with an empty body; the credential id is held (no token hash: the SET has none);
    the same SET again (same jti) is 202 and changes nothing, also after a restart."""
    claims = claims_of(idp, ended())
    token = signed(idp, claims)
    answer = await call(hook, token)
    assert (answer.status, answer.body) == (202, b"")
    assert hook.is_revoked_credential("cred_revokedkey0000000001")
    assert hook.incomplete == {"cred_revokedkey0000000001"}
    assert not hook.is_revoked(API_KEY)  # a SET alone cannot name the key's hash
    assert (len(hook), hook.position, hook.stats.accepted) == (1, 0, 1)
    again = await call(hook, token)
    assert (again.status, again.body) == (202, b"")
    assert (len(hook), hook.stats.accepted, hook.stats.duplicates) == (1, 1, 1)
    await hook.aclose()
    reopened = RevocationWebhook(config_for(idp, state_path))
    try:
        assert reopened.is_revoked_credential("cred_revokedkey0000000001")
        assert (await call(reopened, token)).status == 202
        assert (reopened.stats.accepted, reopened.stats.duplicates, len(reopened)) == (0, 1, 1)
    finally:
        await reopened.aclose()
    raw = State(state_path, config_for(idp, state_path).feed)
    try:
        assert raw.has_set(claims["jti"])
        assert raw.checkpoint.position == 0
    finally:
        raw.close()


async def test_an_access_token_revocation_is_matched_by_its_jti(
    hook: RevocationWebhook, idp: IdentityProvider
) -> None:
    """`sub_id` jwt_id: the token's jti is its credential id; `is_revoked(<the JWT>)` holds at
    once (as for the NATS follower), another token's does not."""
    what = ended("cred_accesstoken000000001", kind="access_token", change="expired")
    assert claims_of(idp, what)["sub_id"]["format"] == "jwt_id"
    answer = await call(hook, signed(idp, claims_of(idp, what)))
    assert answer.status == 202
    access_token = idp.sign({"jti": "cred_accesstoken000000001", "sub": "u"})
    other = idp.sign({"jti": "cred_someotheraccesstoken1", "sub": "u"})
    assert hook.is_revoked(access_token)
    assert not hook.is_revoked(other)
    assert hook.is_revoked_credential("cred_accesstoken000000001")
    assert hook.incomplete == {"cred_accesstoken000000001"}  # no hash, but its jti matches


@pytest.mark.parametrize(
    ("method", "headers", "status", "err"),
    [
        ("GET", None, 405, "invalid_request"),
        ("PUT", None, 405, "invalid_request"),
        ("POST", {"content-type": SET_MEDIA_TYPE}, 400, "authentication_failed"),
        ("POST", {"content-type": SET_MEDIA_TYPE, "authorization": "Bearer whsec_wrong"}, 400,
         "authentication_failed"),
        ("POST", {"content-type": SET_MEDIA_TYPE, "authorization": f"Basic {SECRET}"}, 400,
         "authentication_failed"),
        ("POST", {"content-type": "application/json", "authorization": f"Bearer {SECRET}"}, 400,
         "invalid_request"),
        ("POST", {"authorization": f"Bearer {SECRET}"}, 400, "invalid_request"),
        ("POST", {"content-type": SET_MEDIA_TYPE, "authorization": f"Bearer {SECRET}",
                  "content-length": "1000000"}, 413, "invalid_request"),
    ],
)  # fmt: skip
async def test_requests_that_are_not_an_authenticated_set_post_are_refused(  # noqa: PLR0917
    hook: RevocationWebhook, idp: IdentityProvider, method: str,
    headers: dict[str, str] | None, status: int, err: str,
) -> None:  # fmt: skip
    """Wrong method (405, Allow: POST), missing or wrong secret (RFC 8935
    `authentication_failed`), wrong media type, a declared body over the cap: refused with
    RFC 8935's JSON, even around a genuine SET, and nothing is recorded."""
    answer = await call(hook, signed(idp, claims_of(idp, ended())), method=method, headers=headers)
    assert (answer.status, answer.err()) == (status, err)
    assert answer.headers["content-type"] == "application/json"
    assert "description" in json.loads(answer.body)
    if status == 405:
        assert answer.headers["allow"] == "POST"
    assert (len(hook), hook.stats.refused, idp.jwks_requests) == (0, 1, 0)


async def test_an_oversized_body_is_refused_while_it_streams(
    idp: IdentityProvider, state_path: Path
) -> None:
    """No Content-Length, the body in chunks: refused (413) once past `max_body`."""
    app = RevocationWebhook(config_for(idp, state_path, max_body=2048))
    try:
        headers = {"content-type": SET_MEDIA_TYPE, "authorization": f"Bearer {SECRET}"}
        answer = await call(app, headers=headers, chunks=[b"x" * 1024] * 3)
        assert (answer.status, answer.err()) == (413, "invalid_request")
        fits = signed(idp, claims_of(idp, ended())).encode()
        half = len(fits) // 2
        accepted = await call(app, headers=headers, chunks=[fits[:half], fits[half:]])
        assert accepted.status == 202
    finally:
        await app.aclose()


async def test_sets_that_do_not_verify_or_are_not_for_us_are_refused(
    idp: IdentityProvider, state_path: Path
) -> None:
    """A tampered payload, a stranger's key (its kid still unknown after fetching the JWKS
    again: one more fetch), another issuer, another audience, and malformed tokens: 400 with
    RFC 8935's codes, nothing recorded."""
    app = RevocationWebhook(config_for(idp, state_path, min_refresh=0.0))
    try:
        claims = claims_of(idp, ended())
        other = claims_of(idp, ended("cred_someoneelse000000001"))
        cases = [
            (idp.tampered(other, signed=claims, typ="secevent+jwt"), "invalid_key"),
            (signed(idp, claims_of(idp, ended(), iss="https://evil.example")), "invalid_issuer"),
            (signed(idp, claims_of(idp, ended(), aud="https://other.example")),
             "invalid_audience"),
            (signed(idp, claims_of(idp, ended(), aud=["https://other.example"])),
             "invalid_audience"),
            (signed(idp, claims, typ="at+jwt"), "invalid_request"),
            (signed(idp, claims, crit=["exp"]), "invalid_request"),
            (idp.unsigned(claims, typ="secevent+jwt"), "invalid_request"),
            (idp.hmac_with_public_key(claims, typ="secevent+jwt"), "invalid_request"),
            (signed(idp, {**claims, "jti": 7}), "invalid_request"),
            (signed(idp, {**claims, "sub_id": {"format": "email", "email": "a@b.c"}}),
             "invalid_request"),
            (signed(idp, {k: v for k, v in claims.items() if k != "events"}), "invalid_request"),
            ("not.a.jws!", "invalid_request"),
            ("only-one-part", "invalid_request"),
        ]  # fmt: skip
        for token, err in cases:
            answer = await call(app, token)
            assert (answer.status, answer.err()) == (400, err), token
        fetched = idp.jwks_requests
        stranger = idp.signed_by_stranger(claims, alg="EdDSA", typ="secevent+jwt")
        answer = await call(app, stranger)
        assert (answer.status, answer.err()) == (400, "invalid_key")
        assert idp.jwks_requests == fetched + 1  # fetched once more, still unknown
        assert (len(app), app.stats.accepted, app.stats.refused) == (0, 0, len(cases) + 1)
    finally:
        await app.aclose()


async def test_a_rotated_key_is_fetched_and_a_too_soon_refetch_asks_for_a_retry(
    idp: IdentityProvider, tmp_path: Path
) -> None:
    """A SET under a key published after the last fetch: the receiver reads the JWKS again
    and takes it; within `min_refresh` of the last fetch it answers 503 with Retry-After
    instead (a 400 would dead-letter the subscription), and takes the SET once it may fetch."""
    app = RevocationWebhook(config_for(idp, tmp_path / "a.db", min_refresh=0.0))
    try:
        assert (await call(app, signed(idp, claims_of(idp, ended())))).status == 202
        idp.rotate()
        rotated = signed(idp, claims_of(idp, ended("cred_afterrotation0000001")))
        assert (await call(app, rotated)).status == 202
        assert app.is_revoked_credential("cred_afterrotation0000001")
        assert idp.jwks_requests == 2
    finally:
        await app.aclose()
    config = config_for(idp, tmp_path / "b.db", min_refresh=3600.0)
    app = RevocationWebhook(config)
    try:
        assert (await call(app, signed(idp, claims_of(idp, ended())))).status == 202
        idp.rotate()
        token = signed(idp, claims_of(idp, ended("cred_aftersecondrotation1")))
        answer = await call(app, token)
        assert (answer.status, answer.err(), answer.headers["retry-after"]) == (
            503, "temporarily_unavailable", "3600")  # fmt: skip
        assert (idp.jwks_requests, len(app)) == (3, 1)
    finally:
        await app.aclose()
    app = RevocationWebhook(config)  # restarted: its first SET fetches the JWKS
    try:
        assert (await call(app, token)).status == 202
        assert app.is_revoked_credential("cred_aftersecondrotation1")
    finally:
        await app.aclose()


async def test_an_unreachable_jwks_is_a_retryable_answer(
    idp: IdentityProvider, state_path: Path
) -> None:
    """The issuer's JWKS cannot be read: 503 (the push worker retries), nothing recorded."""
    token = signed(idp, claims_of(idp, ended()))
    await idp.go_down()
    app = RevocationWebhook(config_for(idp, state_path))
    try:
        answer = await call(app, token)
        assert (answer.status, answer.err()) == (503, "temporarily_unavailable")
        assert "retry-after" in answer.headers
        assert len(app) == 0
    finally:
        await app.aclose()


async def test_other_events_and_changes_are_acknowledged_and_ignored(
    hook: RevocationWebhook, idp: IdentityProvider
) -> None:
    """A verified SET without a credential-change, or with a change that ends nothing: 202
    (newer event types must not dead-letter an older receiver) and no change."""
    claims = claims_of(idp, ended())
    [(name, change)] = claims["events"].items()
    other: dict[str, Any] = {"https://example.com/other-event": {}}
    for events in (other, {name: {**change, "change_type": "create"}}):
        assert (await call(hook, signed(idp, {**claims, "events": events}))).status == 202
    assert (len(hook), hook.stats.ignored, hook.stats.accepted) == (0, 2, 0)


async def test_without_a_secret_no_authorization_is_needed(
    idp: IdentityProvider, state_path: Path
) -> None:
    """A subscription without a secret: the SET's signature is the only check."""
    app = RevocationWebhook(config_for(idp, state_path, secret=None))
    try:
        with_parameter = {"content-type": f"{SET_MEDIA_TYPE}; charset=ascii"}
        answer = await call(app, signed(idp, claims_of(idp, ended())), headers=with_parameter)
        assert answer.status == 202
    finally:
        await app.aclose()


def revocation(idp: IdentityProvider, position: int, credential_id: str) -> dict[str, Any]:
    """An entry of `GET /admin/revocations`, signed by the issuer's key."""
    claims = Revocation(
        iss=idp.issuer, tenant="default", position=position, previous_position=0,
        event_id=str(uuid.uuid4()), credential_id=credential_id, credential_kind="api_key",
        token_hash_prefix=token_prefix(API_KEY if position == 42 else credential_id),
        reason="revoked:operator", effective_at=NOW, iat=int(NOW.timestamp()),
        registration_id="reg_1",
    )  # fmt: skip
    key = idp.signing_key.private_key
    assert isinstance(key, Ed25519PrivateKey)
    return {"signed": sign(claims, key, idp.signing_key.kid)}


async def test_with_the_admin_token_an_api_key_row_is_completed_from_the_service(
    idp: IdentityProvider, state_path: Path
) -> None:
    """Given the admin token, the receiver reads the signed entries after its checkpoint
    before it answers: the key's hash prefix completes the row (`is_revoked(<the key>)`) and
    the checkpoint moves to `through`; a failing read leaves the row incomplete, still 202."""
    asked: list[httpx.Request] = []
    answers = [
        httpx.Response(200, json={"revocations": [revocation(idp, 40, "cred_earlier000000000001"),
                                                  revocation(idp, 42, "cred_revokedkey0000000001")],
                                  "through": 45, "more": False}),
        httpx.Response(503, json={"error": "unavailable"}),
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=idp.issuer) as jwks_client:

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/admin/revocations":
                asked.append(request)
                return answers.pop(0)
            return (await jwks_client.get(request.url.path)).raise_for_status()

        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(transport=transport, base_url=idp.issuer) as http:
            config = config_for(idp, state_path, admin_token="t" * 32)
            app = RevocationWebhook(config, http=http)
            try:
                assert (await call(app, signed(idp, claims_of(idp, ended())))).status == 202
                assert app.is_revoked(API_KEY)
                assert app.is_revoked(token_prefix(API_KEY))
                assert app.is_revoked_credential("cred_earlier000000000001")
                assert (app.incomplete, app.position, len(app)) == (frozenset(), 45, 2)
                later = ended("cred_laterkey00000000001")
                assert (await call(app, signed(idp, claims_of(idp, later)))).status == 202
                assert app.incomplete == {"cred_laterkey00000000001"}
                assert (app.position, app.stats.pulls, app.stats.pull_failures) == (45, 2, 1)
            finally:
                await app.aclose()
    assert [dict(r.url.params) for r in asked] == [
        {"after": "0", "limit": "1000"}, {"after": "45", "limit": "1000"}]  # fmt: skip
    assert all(r.headers["authorization"] == "Bearer " + "t" * 32 for r in asked)


async def test_lifespan_startup_and_shutdown_are_answered(
    idp: IdentityProvider, state_path: Path
) -> None:
    """Mounted under a server that speaks lifespan: start-up and shut-down complete."""
    app = RevocationWebhook(config_for(idp, state_path))
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_the_subscriber_package_with_the_webhook_imports_nothing_of_the_service() -> None:
    """A resource server mounting the webhook pulls in no service code (nor asyncpg, Litestar
    or PyJWT): the package stands on its own."""
    outside = "{'events', 'projections', 'service', 'workers', 'asyncpg', 'litestar', 'jwt'}"
    code = ("import sys, subscriber, subscriber.webhook; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {outside}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True, timeout=60)  # fmt: skip
    assert done.stdout.strip() == "[]"

"""The revocation webhook, for resource servers: an ASGI application that takes authledger's
pushes (RFC 8935) of Security Event Tokens (RFC 8417) into the same local state as the NATS
follower (`subscriber/state.py`), and answers `is_revoked` from it.

    receiver = RevocationWebhook(WebhookConfig(issuer=..., audience=..., secret=...,
                                               state_path="revoked.db"))
    # mount `receiver` at the URL registered with `POST /admin/subscriptions`
    # (uvicorn, or any ASGI server or framework that mounts ASGI apps)

Mount it in the process that asks `is_revoked`, and run one such process: the set is kept in
memory from the file when the app is made and then from the SETs this process takes (another
process opening the file reads what was committed up to then). Register the exact URL it
answers at: the push worker follows no redirect (a framework's trailing-slash redirect would
dead-letter the subscription). The path is not checked; any path mounted here is the receiver.

A request is checked in this order, and refused with RFC 8935 §2.3's `{"err",
"description"}` (the push worker dead-letters on a 4xx, retries on a 5xx):

- 405 (`Allow: POST`): any method but POST;
- 400 `authentication_failed`: a secret is configured and the request lacks
  `Authorization: Bearer <it>` (compared in constant time);
- 400 `invalid_request`: `Content-Type` is not `application/secevent+jwt`;
- 413 `invalid_request`: the body is larger than `max_body` bytes;
- 400 `invalid_request`: not a compact JWS, a header `typ` other than `secevent+jwt`, an `alg`
  other than EdDSA, a `crit` header, claims that are not a SET (`jti`, `iat`, `events`), a
  credential-change whose `sub_id` is neither RFC 9493 `opaque` nor `jwt_id` of our issuer;
- 400 `invalid_key`: a `kid` the issuer's JWKS lacks after fetching it again (once; at most
  one fetch every `min_refresh` seconds, see `subscriber/keys.py`), or a signature that does
  not verify under the key named;
- 400 `invalid_issuer` / `invalid_audience`: `iss` / `aud` other than the configured ones;
- 503 `temporarily_unavailable` (`Retry-After`): the JWKS could not be read, or names no
  such key but was read too recently to read again (a key rotated moments ago must not
  dead-letter the subscription).

Otherwise 202 with an empty body, once the SET is in the state file (one SQLite transaction):
its `jti` (a redelivered SET, same `jti`: authledger keeps it across retries and replays, is
answered 202 again and changes nothing) and the credential it ends. A verified SET with no
CAEP `credential-change` event, or a change other than `revoke`/`delete`, is answered 202 and
changes nothing (newer event types must not dead-letter an older receiver).

What a SET names, and what `is_revoked` then knows (service/push/sets.py builds them):

- `sub_id` `{"format": "jwt_id", "iss", "jti"}`: an access token; its `jti` is the
  credential id. Both are recorded: `is_revoked(<the access token>)` (its `jti`) and
  `is_revoked_credential(<id>)` answer True at once.
- The credential-change event's `token_hash_prefix` (an authledger extension: 16 hex of the
  bearer value's SHA-256) makes an API key's row complete at once, so `is_revoked(<key>)`
  holds with no admin token. Without it (an older authledger) the following applies:
- `sub_id` `{"format": "opaque", "id"}`: an API key, named by its credential id only. The
  SET carries no hash of the key, so from the SET alone only `is_revoked_credential(<id>)`
  knows it; `is_revoked(<the key>)` needs the key's SHA-256 prefix. Given `admin_token`, the
  receiver reads the authoritative, signed entries from `GET /admin/revocations` after its
  checkpoint (verified like the feed's messages) before it answers, and the key's prefix,
  registration, user and log position complete the row. Without it the row stays incomplete
  (`incomplete`): use the NATS follower, or map keys to credential ids yourself.

The checkpoint, for webhook-fed state: a SET carries no log position (`txn` is the log
event's id, kept with the `jti`), so SETs never move it. Only the reads of
`/admin/revocations` do, with the NATS follower's meaning: every revocation of the tenant up
to `position` is held. Without the admin token it stays 0, and completeness rests on the
service: each subscription's cursor (`GET /admin/subscriptions/{id}`) moves only on a 2xx, a
202 is only sent after the commit, and pushes come in log order, so a receiver that was down
or crashed gets everything after its last 202, in order. `seq` is unused (0). The state's
feed is `webhook <issuer> <audience>`: a NATS follower refuses the file, and vice versa.

Imports nothing from the service (httpx, cryptography and the standard library, with
`subscriber.keys`, `.state` and `.wire`); the SET, the secret and the admin token are never
logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from subscriber.keys import KeySet
from subscriber.revoked import RevokedSet
from subscriber.state import PushedRevocation, State
from subscriber.wire import BadMessage, Revocation

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SET_MEDIA_TYPE = "application/secevent+jwt"
SET_TYPES = frozenset({"secevent+jwt", "application/secevent+jwt"})
ALG = "EdDSA"
CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
ENDING_CHANGES = frozenset({"revoke", "delete"})
REVOCATIONS_PATH = "/admin/revocations"
MAX_ID = 256  # longest jti, txn or credential id taken
_HASH_PREFIX = re.compile(r"[0-9a-f]{16}")
log = logging.getLogger("authledger.subscriber.webhook")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_REVOKED = re.compile(r"^credential revoked \(([a-z0-9_.-]{1,64})\)$")


@dataclass(frozen=True)
class WebhookConfig:
    issuer: str  # the `iss` authledger signs with (its AUTHLEDGER_PUBLIC_URL, or the tenant's)
    audience: str  # the subscription's `audience` (authledger's default: its URL)
    state_path: str | Path | None = None  # None: in memory only
    secret: str | None = None  # the subscription's `secret`, expected as a bearer token
    service_url: str | None = None  # the JWKS (and /admin/revocations) are read here; the issuer
    admin_token: str | None = None  # completes API keys' rows from /admin/revocations
    max_body: int = 64 * 1024  # an authledger SET is under 1 KiB
    min_refresh: float = 5.0  # seconds between two fetches of the JWKS
    http_timeout: float = 10.0
    page: int = 1000  # entries per /admin/revocations request

    @property
    def feed(self) -> str:
        return f"webhook {self.issuer.rstrip('/')} {self.audience}"


@dataclass
class WebhookStats:
    received: int = 0  # POSTs and other requests answered
    accepted: int = 0  # new SETs recorded
    duplicates: int = 0  # SETs whose jti was recorded before
    ignored: int = 0  # verified SETs with nothing for the revoked set
    refused: int = 0  # requests answered 4xx/5xx
    pulls: int = 0  # reads of /admin/revocations done
    pull_failures: int = 0  # reads that failed (the rows stay incomplete until the next one)


class Refused(Exception):
    """A request refused with `status` and RFC 8935's `err` code."""

    def __init__(
        self, status: int, err: str, description: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(description)
        self.status, self.err, self.description = status, err, description
        self.headers = headers


class PullFailed(Exception):
    """`/admin/revocations` could not be read, or an entry did not verify."""


class _Disconnected(Exception):
    """The client went away before its body arrived: nothing to answer."""


class _IssuerKeys(KeySet):
    """The issuer's JWKS (subscriber/keys.py), asked for one key of a SET."""

    async def key(self, kid: str) -> tuple[Ed25519PublicKey | None, bool]:
        """The key named `kid` (None: not published), and whether the JWKS was fetched for
        this question (False: a fresh fetch was refused by `min_refresh`)."""
        fetched = await self.refresh() if self._fetched is None else False
        key = self._keys.get(kid)
        if key is None and not fetched:
            fetched = await self.refresh()
            key = self._keys.get(kid)
        return key, fetched


class RevocationWebhook(RevokedSet):
    """The ASGI application; see the module docstring. Ask it `is_revoked` meanwhile."""

    def __init__(self, config: WebhookConfig, *, http: httpx.AsyncClient | None = None) -> None:
        """`http`, when given, must have the service as its base URL (and is not closed)."""
        self.config = config
        self.stats = WebhookStats()
        self._state = State(config.state_path, config.feed)
        self._owns_http = http is None
        base = (config.service_url or config.issuer).rstrip("/")
        self._http = http or httpx.AsyncClient(base_url=base, timeout=config.http_timeout)
        self._keys = _IssuerKeys(self._http, min_refresh=config.min_refresh)
        self._pulling = asyncio.Lock()

    # -- asking (`RevokedSet`: len, is_revoked, is_revoked_credential) -------------------

    @property
    def position(self) -> int | None:
        """Every revocation up to here is held (moved only by /admin/revocations reads)."""
        return self._state.checkpoint.position

    @property
    def incomplete(self) -> frozenset[str]:
        """Credential ids held from a SET alone, without their token hash: an API key's
        bearer value is matched by nothing else; an access token's still by its `jti`."""
        return frozenset(self._state.incomplete)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
        self._state.close()

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http_request(scope, receive, send)
        else:  # a websocket: not ours
            await receive()
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.config.admin_token and self._state.incomplete:
                    await self._complete()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.stats.received += 1
        try:
            await self._take(scope, receive)
        except _Disconnected:
            return
        except Refused as refusal:
            self.stats.refused += 1
            log.info("webhook.refused status=%d err=%s: %s",
                     refusal.status, refusal.err, refusal.description)  # fmt: skip
            body = json.dumps({"err": refusal.err, "description": refusal.description}).encode()
            await _answer(send, refusal.status, body, refusal.headers)
            return
        await _answer(send, 202, b"", ())

    async def _take(self, scope: Scope, receive: Receive) -> None:
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        if scope.get("method") != "POST":
            raise Refused(405, "invalid_request", "POST a SET here", [("allow", "POST")])
        self._authenticate(headers.get("authorization"))
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != SET_MEDIA_TYPE:
            raise Refused(400, "invalid_request", f"the body must be {SET_MEDIA_TYPE}")
        token = await self._body(headers.get("content-length"), receive)
        claims = await self._verified(token)
        pushed = self._revocation(claims)
        if pushed is None:
            self.stats.ignored += 1
            return
        if not self._state.record_set(pushed):
            self.stats.duplicates += 1
            return
        self.stats.accepted += 1
        log.info("webhook.recorded credential_id=%s txn=%s", pushed.credential_id, pushed.txn)
        unmatchable = (
            pushed.token_jti is None
            and pushed.token_hash_prefix is None
            and pushed.credential_id in self._state.incomplete
        )
        if self.config.admin_token and unmatchable:  # an API key: no bearer value matches yet
            await self._complete()

    def _authenticate(self, authorization: str | None) -> None:
        expected = self.config.secret
        if expected is None:
            return
        if authorization is None:
            raise Refused(400, "authentication_failed", "a bearer secret is required")
        scheme, _, presented = authorization.partition(" ")
        # digests of equal length: the comparison says nothing about the secret's length
        same = hmac.compare_digest(
            hashlib.sha256(presented.strip().encode()).digest(),
            hashlib.sha256(expected.encode()).digest(),
        )
        if scheme.lower() != "bearer" or not same:
            raise Refused(400, "authentication_failed", "the bearer secret does not match")

    async def _body(self, declared: str | None, receive: Receive) -> bytes:
        cap = self.config.max_body
        too_large = Refused(413, "invalid_request", f"the SET is larger than {cap} bytes")
        if declared is not None and declared.strip().isdigit() and int(declared) > cap:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- the SET ---------------------------------------------------------------------------

    async def _verified(self, token: bytes) -> dict[str, Any]:
        """The claims of a SET signed by the issuer for our audience."""
        parts = token.strip().split(b".")
        if len(parts) != 3 or not all(_B64URL.match(p.decode("latin-1")) for p in parts):
            raise Refused(400, "invalid_request", "the body is not a compact JWS")
        header = _json_object(parts[0], "header")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in SET_TYPES:
            raise Refused(400, "invalid_request", "the JWS typ is not secevent+jwt")
        if header.get("alg") != ALG or "crit" in header:
            raise Refused(400, "invalid_request", f"the JWS must be alg {ALG}, without crit")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Refused(400, "invalid_request", "the JWS names no kid")
        key = await self._key(kid)
        try:
            key.verify(_unb64(parts[2]), parts[0] + b"." + parts[1])
        except InvalidSignature:
            raise Refused(400, "invalid_key", "the signature does not verify") from None
        claims = _json_object(parts[1], "claims")
        if claims.get("iss") != self.config.issuer:
            raise Refused(400, "invalid_issuer", "the SET is not from the expected issuer")
        aud, audience = claims.get("aud"), self.config.audience
        if not (aud == audience or (isinstance(aud, list) and audience in aud)):
            raise Refused(400, "invalid_audience", "the SET is not for this receiver")
        return claims

    async def _key(self, kid: str) -> Ed25519PublicKey:
        retry = [("retry-after", str(max(1, math.ceil(self.config.min_refresh))))]
        try:
            key, fetched = await self._keys.key(kid)
        except (httpx.HTTPError, ValueError, AttributeError) as exc:  # unreachable, not JSON
            log.warning("webhook.jwks_unavailable: %r", exc)
            raise Refused(503, "temporarily_unavailable", "the issuer's keys could not be read",
                          retry) from None  # fmt: skip
        if key is not None:
            return key
        if fetched:
            raise Refused(400, "invalid_key", "the issuer publishes no key of this kid")
        raise Refused(503, "temporarily_unavailable", "unknown kid; the keys were read moments "
                      "ago, try again", retry)  # fmt: skip

    def _revocation(self, claims: dict[str, Any]) -> PushedRevocation | None:
        """What the SET says about an ended credential; None when it says nothing of one."""
        set_jti, txn, iat, events = (claims.get(n) for n in ("jti", "txn", "iat", "events"))
        if not _an_id(set_jti):
            raise Refused(400, "invalid_request", "the SET needs a string jti")
        if txn is not None and not _an_id(txn):
            raise Refused(400, "invalid_request", "the SET's txn is not a string")
        if not _an_int(iat) or not isinstance(events, dict):
            raise Refused(400, "invalid_request", "the SET needs an iat and an events object")
        change = events.get(CREDENTIAL_CHANGE)
        if change is None:
            return None
        if not isinstance(change, dict):
            raise Refused(400, "invalid_request", "the credential-change event is not an object")
        if change.get("change_type") not in ENDING_CHANGES:
            return None
        credential_id, token_jti = self._subject(claims.get("sub_id"))
        at = change.get("event_timestamp", iat)
        if not _an_int(at):
            raise Refused(400, "invalid_request", "event_timestamp is not a number of seconds")
        try:
            effective_at = datetime.fromtimestamp(at, UTC)
        except (OverflowError, ValueError, OSError):
            raise Refused(400, "invalid_request", "event_timestamp is out of range") from None
        prefix = change.get("token_hash_prefix")
        if prefix is not None and not (isinstance(prefix, str) and _HASH_PREFIX.fullmatch(prefix)):
            raise Refused(400, "invalid_request", "token_hash_prefix is not 16 hex characters")
        return PushedRevocation(
            set_jti=set_jti, txn=txn, credential_id=credential_id, token_jti=token_jti,
            token_hash_prefix=prefix,
            reason=_reason(change.get("reason_admin")), effective_at=effective_at,
            received_at=datetime.now(UTC),
        )  # fmt: skip

    def _subject(self, sub_id: object) -> tuple[str, str | None]:
        """(credential id, access token jti) of an RFC 9493 subject identifier."""
        match sub_id:
            case {"format": "opaque", "id": str(credential_id)} if _an_id(credential_id):
                return credential_id, None
            case {"format": "jwt_id", "iss": str(iss), "jti": str(jti)} if _an_id(jti):
                if iss != self.config.issuer:
                    raise Refused(400, "invalid_request", "an access token of another issuer")
                return jti, jti
        raise Refused(400, "invalid_request", "sub_id is neither opaque nor jwt_id")

    # -- completing API keys ---------------------------------------------------------------

    async def _complete(self) -> None:
        """`catch_up`, a failure logged and counted (the rows stay incomplete until the next
        SET, start or `catch_up`): the SET itself is recorded already."""
        try:
            await self.catch_up()
        except (PullFailed, httpx.HTTPError) as exc:
            self.stats.pull_failures += 1
            log.warning("webhook.pull_failed (rows stay incomplete): %s", exc)

    async def catch_up(self) -> int:
        """Read every revocation after the checkpoint from `/admin/revocations` (needs
        `admin_token`), verify each entry with the issuer's JWKS and apply it, page by page,
        moving the checkpoint; returns how many credentials were new to the set."""
        token = self.config.admin_token
        if not token:
            raise RuntimeError("catch_up needs the admin token")
        async with self._pulling:
            self.stats.pulls += 1
            after, added = self._state.checkpoint.position or 0, 0
            while True:
                response = await self._http.get(
                    REVOCATIONS_PATH,
                    params={"after": after, "limit": self.config.page},
                    headers={"Authorization": f"Bearer {token}"},
                )
                if response.status_code != 200:
                    raise PullFailed(f"{REVOCATIONS_PATH} answered {response.status_code}")
                try:
                    body = response.json()
                    items = [await self._entry(e["signed"]) for e in body["revocations"]]
                    through, more = max(int(body["through"]), after), bool(body["more"])
                except (BadMessage, KeyError, TypeError, ValueError) as exc:
                    raise PullFailed(f"{REVOCATIONS_PATH} entry refused: {exc!r}") from None
                added += len(self._state.apply(items, through, self._state.checkpoint.seq))
                after = through
                if not more:
                    return added

    async def _entry(self, signed: str) -> Revocation:
        claims = await self._keys.verify(signed)
        if claims.iss != self.config.issuer:
            raise BadMessage(f"an entry of issuer {claims.iss}")
        return claims


async def _answer(send: Send, status: int, body: bytes, headers: Sequence[tuple[str, str]]) -> None:
    raw = [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    if body:
        raw.append((b"content-type", b"application/json"))
    raw += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _unb64(part: bytes) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise Refused(400, "invalid_request", "the body is not a compact JWS") from None


def _json_object(part: bytes, what: str) -> dict[str, Any]:
    try:
        found = json.loads(_unb64(part))
    except (ValueError, UnicodeDecodeError):
        found = None
    if not isinstance(found, dict):
        raise Refused(400, "invalid_request", f"the JWS {what} is not a JSON object")
    return found


def _an_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID


def _an_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _reason(reason_admin: object) -> str:
    """The feed's reason (`revoked:<code>`, `expired`) from authledger's `reason_admin`
    (`credential revoked (<code>)`, `credential expired`); `revoked` when it says neither."""
    text = reason_admin.get("en") if isinstance(reason_admin, dict) else None
    if text == "credential expired":
        return "expired"
    found = _REVOKED.match(text) if isinstance(text, str) else None
    return f"revoked:{found.group(1)}" if found else "revoked"

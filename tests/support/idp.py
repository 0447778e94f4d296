"""A test agent provider: its own keys, its JWKS served over real HTTP, and tokens made to order.

The JWKS is served on 127.0.0.1 and a free port by a small HTTP/1.1 server in the test's own
event loop, so the cache under test goes through httpx, sockets and all. The provider can be
made to misbehave the way real ones do: rotate keys, hold responses (`hold`/`release`, so a
test can await a request's arrival instead of sleeping), answer with an error status, stop
listening, or serve a JWKS larger than any cache should accept.

With `oidc(client_id, client_secret)` it is also an OpenID Connect provider (discovery,
/authorize, /token; tests/support/oidc_face.py), for the sign-in tests.

It mints ID-JAGs, logout tokens (E9) and Security Event Tokens (V9). Tokens are built by hand rather
than with a JWT library so that any header member or claim can be set to anything, or left out, and
so that wrong ones can be made on purpose: `alg: none`, HS256 keyed with the public key's PEM, a
signature of another payload, a key the JWKS lacks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import get_default_algorithms

from service.providers.jwks import KeyUnavailable, VerificationKey, read_jwks
from service.providers.trust import TrustedIssuer
from tests.support.oidc_face import OidcFace

REVOKED_EVENT = "https://schemas.workos.com/events/agent/auth/identity/assertion/revoked"
JWKS_PATH = "/.well-known/jwks.json"
THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | Ed25519PrivateKey


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256): the required members, sorted, no whitespace."""
    required = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class ProviderKey:
    """A signing key of the provider; `kid` is the thumbprint of its public JWK."""

    alg: str
    private_key: PrivateKey
    public_jwk: dict[str, Any]

    @classmethod
    def generate(cls, alg: str = "ES256") -> ProviderKey:
        private_key: PrivateKey
        match alg:
            case "ES256":
                private_key = ec.generate_private_key(ec.SECP256R1())
            case "RS256" | "PS256":
                private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            case "EdDSA":
                private_key = Ed25519PrivateKey.generate()
            case _:
                raise ValueError(f"no key type for {alg}")
        jwk = get_default_algorithms()[alg].to_jwk(private_key.public_key(), as_dict=True)
        public = {k: v for k, v in jwk.items() if k in THUMBPRINT_MEMBERS[jwk["kty"]]}
        return cls(
            alg, private_key, {**public, "kid": thumbprint(public), "alg": alg, "use": "sig"}
        )

    @property
    def kid(self) -> str:
        return str(self.public_jwk["kid"])

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self, **changes: Any) -> dict[str, Any]:
        """The public JWK with some members changed (a value of None removes the member)."""
        merged = {**self.public_jwk, **changes}
        return {k: v for k, v in merged.items() if v is not None}

    def sign(self, signing_input: bytes) -> bytes:
        signature: bytes = get_default_algorithms()[self.alg].sign(signing_input, self.private_key)
        return signature


def _header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()


def _segment(value: Mapping[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def compact(header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes) -> str:
    return f"{_segment(header)}.{_segment(claims)}.{b64url(signature)}"


def _edited(
    base: dict[str, Any], changes: Mapping[str, Any] | None, remove: Iterable[str]
) -> dict[str, Any]:
    edited = {**base, **(changes or {})}
    for name in remove:
        edited.pop(name, None)
    return edited


class TrustList:
    """The service's trust list as a fake `TrustLookup`; counts the lookups."""

    def __init__(self, *entries: TrustedIssuer) -> None:
        self.entries = {entry.issuer: entry for entry in entries}
        self.lookups = 0

    async def __call__(self, iss: str) -> TrustedIssuer | None:
        self.lookups += 1
        return self.entries.get(iss)

    def add(self, entry: TrustedIssuer) -> None:
        self.entries[entry.issuer] = entry

    def remove(self, issuer: str) -> None:
        del self.entries[issuer]


class PublishedKeys:
    """A `KeySource` that reads the providers' JWKS in memory: the verifier without HTTP."""

    def __init__(self, *providers: IdentityProvider) -> None:
        self.providers = {provider.issuer: provider for provider in providers}
        self.lookups = 0

    async def key(self, issuer: TrustedIssuer, kid: str) -> VerificationKey:
        self.lookups += 1
        provider = self.providers.get(issuer.issuer)
        keys = read_jwks(provider.jwks()) if provider is not None else {}
        if kid not in keys:
            raise KeyUnavailable(f"no key {kid!r} for {issuer.issuer}")
        return keys[kid]


class IdentityProvider:
    """An agent provider for tests; use as `async with IdentityProvider() as idp: ...`."""

    def __init__(
        self,
        *,
        alg: str = "ES256",
        max_age: int | None = 300,
        issuer: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = 0
        self.signing_key = ProviderKey.generate(alg)
        self.keys: list[ProviderKey] = [self.signing_key]  # published in the JWKS
        self.extra_jwks: list[dict[str, Any]] = []  # published as they are, after `keys`
        self.max_age = max_age  # Cache-Control max-age; None: no Cache-Control header
        self.status = 200  # answer JWKS requests with this status (503: "down" but listening)
        self.oversize: int | None = None  # pad the JWKS body past this many bytes
        self.chunked = False  # send the body chunked, without Content-Length
        self.delay = timedelta(0)  # wait this long before each answer
        self.jwks_requests = 0
        self.connections = 0  # TCP connections accepted, whatever came over them
        self._issuer = issuer
        self._server: asyncio.Server | None = None
        self._released = asyncio.Event()
        self._released.set()
        self._stopping = asyncio.Event()
        self._requested = asyncio.Event()
        self._connections: set[asyncio.Task[Any]] = set()
        self.oidc_face: OidcFace | None = None  # `oidc()` turns the OpenID routes on

    # identity

    @property
    def issuer(self) -> str:
        if self._issuer is not None:
            return self._issuer
        if not self.port:
            raise RuntimeError("start the provider (or give it an issuer) before asking its iss")
        return f"http://{self.host}:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"http://{self.host}:{self.port}{JWKS_PATH}"

    def trusted(self, **fields: Any) -> TrustedIssuer:
        """A trust entry for this provider, its keys URL pinned to where it serves them."""
        fields.setdefault("jwks_uri", self.jwks_url if self.port else None)
        return TrustedIssuer(issuer=self.issuer, **fields)

    def rotate(self, alg: str | None = None, *, keep_old: bool = True) -> ProviderKey:
        """Sign with a new key from now on and publish it (beside the old ones, or alone)."""
        new = ProviderKey.generate(alg or self.signing_key.alg)
        self.keys = [*self.keys, new] if keep_old else [new]
        self.signing_key = new
        return new

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk for key in self.keys] + self.extra_jwks}

    def oidc(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        now: Callable[[], datetime] | None = None,
    ) -> OidcFace:
        """Serve the OpenID Connect routes too (tests/support/oidc_face.py) for one client;
        the face's knobs are set on what this returns."""
        self.oidc_face = OidcFace(self, client_id, client_secret)
        if now is not None:
            self.oidc_face.now = now
        return self.oidc_face

    # tokens

    def id_jag_claims(
        self,
        *,
        aud: str | list[str],
        now: datetime,
        sub: str = "user-1",
        lifetime: timedelta = timedelta(minutes=5),
        overrides: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
    ) -> dict[str, Any]:
        issued = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "client_id": self.issuer,
            "jti": str(uuid.uuid4()),
            "iat": issued,
            "exp": issued + int(lifetime.total_seconds()),
            "email": f"{sub}@example.net",
            "email_verified": True,
        }
        return _edited(claims, overrides, remove)

    def logout_claims(
        self,
        *,
        aud: str | list[str],
        now: datetime,
        sub: str = "user-1",
        overrides: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
    ) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "jti": str(uuid.uuid4()),
            "iat": int(now.timestamp()),
            "events": {REVOKED_EVENT: {}},
        }
        return _edited(claims, overrides, remove)

    def header(
        self,
        typ: str = "oauth-id-jag+jwt",
        *,
        key: ProviderKey | None = None,
        changes: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
    ) -> dict[str, Any]:
        key = key or self.signing_key
        return _edited({"typ": typ, "alg": key.alg, "kid": key.kid}, changes, remove)

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        header: Mapping[str, Any] | None = None,
        key: ProviderKey | None = None,
    ) -> str:
        """A compact JWS of `claims` under `header` (default: an ID-JAG header for `key`)."""
        key = key or self.signing_key
        header = self.header(key=key) if header is None else header
        unsigned = f"{_segment(header)}.{_segment(claims)}"
        return f"{unsigned}.{b64url(key.sign(unsigned.encode()))}"

    def mint_id_jag(
        self,
        *,
        aud: str | list[str],
        now: datetime,
        sub: str = "user-1",
        lifetime: timedelta = timedelta(minutes=5),
        overrides: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        header: Mapping[str, Any] | None = None,
        remove_header: Iterable[str] = (),
        key: ProviderKey | None = None,
    ) -> str:
        """An ID-JAG signed by `key` (default: the current key); any claim or header member
        can be changed (`overrides`, `header`) or left out (`remove`, `remove_header`)."""
        claims = self.id_jag_claims(
            aud=aud, now=now, sub=sub, lifetime=lifetime, overrides=overrides, remove=remove
        )
        full_header = self.header(key=key, changes=header, remove=remove_header)
        return self.sign(claims, header=full_header, key=key)

    def mint_logout_token(
        self,
        *,
        aud: str | list[str],
        now: datetime,
        sub: str = "user-1",
        overrides: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        header: Mapping[str, Any] | None = None,
        remove_header: Iterable[str] = (),
        key: ProviderKey | None = None,
    ) -> str:
        """A logout token (`typ: logout+jwt`, no exp), editable as `mint_id_jag`'s."""
        claims = self.logout_claims(aud=aud, now=now, sub=sub, overrides=overrides, remove=remove)
        full_header = self.header("logout+jwt", key=key, changes=header, remove=remove_header)
        return self.sign(claims, header=full_header, key=key)

    def mint_set(
        self,
        *,
        aud: str | list[str],
        now: datetime,
        sub: str = "user-1",
        overrides: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        header: Mapping[str, Any] | None = None,
        remove_header: Iterable[str] = (),
        key: ProviderKey | None = None,
    ) -> str:
        """A Security Event Token as the contract's provider sends one to V9 (`typ:
        secevent+jwt`, the revoked event URI, no exp), editable as `mint_id_jag`'s."""
        claims = self.logout_claims(aud=aud, now=now, sub=sub, overrides=overrides, remove=remove)
        full_header = self.header("secevent+jwt", key=key, changes=header, remove=remove_header)
        return self.sign(claims, header=full_header, key=key)

    # wrong on purpose

    def unsigned(self, claims: Mapping[str, Any], *, typ: str = "oauth-id-jag+jwt") -> str:
        """`alg: none` with an empty signature."""
        return compact({"typ": typ, "alg": "none", "kid": self.signing_key.kid}, claims, b"")

    def hmac_with_public_key(
        self, claims: Mapping[str, Any], *, typ: str = "oauth-id-jag+jwt"
    ) -> str:
        """HS256 keyed with the public key's PEM (the classic algorithm-confusion attack)."""
        header = {"typ": typ, "alg": "HS256", "kid": self.signing_key.kid}
        unsigned = f"{_segment(header)}.{_segment(claims)}"
        mac = hmac.new(self.signing_key.public_pem, unsigned.encode(), hashlib.sha256).digest()
        return f"{unsigned}.{b64url(mac)}"

    def tampered(
        self, claims: Mapping[str, Any], *, signed: Mapping[str, Any], typ: str = "oauth-id-jag+jwt"
    ) -> str:
        """`claims` as the payload, with the signature of `signed` under the same header."""
        header = self.header(typ)
        signature = self.signing_key.sign(f"{_segment(header)}.{_segment(signed)}".encode())
        return compact(header, claims, signature)

    def signed_by_stranger(
        self, claims: Mapping[str, Any], *, alg: str = "ES256", typ: str = "oauth-id-jag+jwt"
    ) -> str:
        """Signed by a fresh key the JWKS does not publish (its kid is unknown)."""
        stranger = ProviderKey.generate(alg)
        return self.sign(claims, header=self.header(typ, key=stranger), key=stranger)

    # serving

    async def start(self) -> IdentityProvider:
        self._stopping.clear()
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        await self.go_down()
        self._stopping.set()
        self._released.set()
        # let held or delayed answers finish (to clients long gone, mostly) rather than cancel
        # them: asyncio reports a cancelled connection handler as an unhandled error
        async with asyncio.timeout(10):
            await asyncio.gather(*self._connections)

    async def __aenter__(self) -> IdentityProvider:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def go_down(self) -> None:
        """Stop listening: connections are refused until `come_back`."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def come_back(self) -> None:
        """Listen again, on the same port."""
        await self.start()

    def hold(self) -> None:
        """Keep JWKS requests waiting (counted, unanswered) until `release`."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def wait_for_requests(self, count: int, *, patience: float = 10.0) -> None:
        """Return once `count` JWKS requests have arrived (answered or held) in total."""
        async with asyncio.timeout(patience):
            while self.jwks_requests < count:
                self._requested.clear()
                await self._requested.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target = request_line.split(" ")[:2]
            path = target.split("?", 1)[0]
            face = self.oidc_face
            if face is not None and path in face.paths:
                headers = dict(_header(line) for line in lines if ":" in line)
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                await self._answer(writer, *face.answer(method, target, headers, body))
                return
            if path != JWKS_PATH:
                await self._answer(writer, 404, b"not found", {})
                return
            self.jwks_requests += 1
            self._requested.set()
            await self._released.wait()
            if self.delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.delay.total_seconds())
            await self._answer_jwks(writer)
        except (
            ConnectionError,
            IndexError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer_jwks(self, writer: asyncio.StreamWriter) -> None:
        if self.status != 200:
            await self._answer(writer, self.status, b"unavailable", {})
            return
        document = self.jwks()
        if self.oversize is not None:
            document["padding"] = "x" * self.oversize
        headers = {"Content-Type": "application/json"}
        if self.max_age is not None:
            headers["Cache-Control"] = f"public, max-age={self.max_age}"
        await self._answer(writer, 200, json.dumps(document).encode(), headers)

    async def _answer(
        self, writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        lines = [f"HTTP/1.1 {status} X", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        else:
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not self.chunked:
            writer.write(body)
        else:
            for start in range(0, len(body), 4096):
                chunk = body[start : start + 4096]
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        await writer.drain()

"""The service's public keys, fetched from its JWKS over HTTP and kept.

A message naming a kid the set lacks makes one new fetch (at most one every `min_refresh`
seconds, so junk kids cannot make us hammer the service); still unknown after that, the
message is unverifiable and the subscriber resynchronises instead of trusting it.
"""

from __future__ import annotations

import time

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from subscriber.wire import Revocation, UnknownKey, public_keys, verify

JWKS_PATH = "/.well-known/jwks.json"


class KeySet:
    def __init__(self, http: httpx.AsyncClient, *, min_refresh: float = 5.0) -> None:
        self._http = http
        self._min_refresh = min_refresh
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched: float | None = None

    async def refresh(self) -> bool:
        """Fetch the JWKS again, unless it was fetched less than `min_refresh` s ago."""
        now = time.monotonic()
        if self._fetched is not None and now - self._fetched < self._min_refresh:
            return False
        response = await self._http.get(JWKS_PATH)
        response.raise_for_status()
        self._keys = public_keys(response.json())
        self._fetched = now
        return True

    async def verify(self, token: str | bytes) -> Revocation:
        """The verified claims; wire.BadMessage (or a subclass) when they do not verify."""
        if self._fetched is None:
            await self.refresh()
        try:
            return verify(token, self._keys)
        except UnknownKey:
            if not await self.refresh():
                raise
        return verify(token, self._keys)

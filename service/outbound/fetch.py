"""One bounded JSON request through a guarded client: the JWKS of agent providers
(service/providers/jwks.py) and an OpenID provider's configuration and token endpoint
(service/signin/oidc.py).

The whole request (connect, headers and body) has one deadline; anything but `200` is a
failure before the body is read; the body is read as a stream and given up on past
`max_bytes` (a declared Content-Length over it fails at once); it must be JSON. Which URLs
may be asked at all is `url_refusal`'s: https, or plain http on a loopback host when the
installation allows it (`AUTHLEDGER_JWKS_ALLOW_LOOPBACK_HTTP`, dev and tests). The addresses
a name resolves to are the guarded client's (service/outbound/transport.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx

from service.outbound.transport import refused_by

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class FetchFailed(Exception):
    """The request failed; the message says how (status, size, time, refusal), never a secret."""


def url_refusal(url: str, *, allow_loopback_http: bool) -> str | None:
    """Why `url` may not be fetched (not a URL, not https), or None when it may."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return f"{url!r} is not a URL"
    if parsed.scheme == "https" and parsed.host:
        return None
    if allow_loopback_http and parsed.scheme == "http" and parsed.host in LOOPBACK_HOSTS:
        return None
    return f"{url!r} is not https"


async def fetch_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    within: timedelta,
    max_bytes: int,
    headers: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
) -> tuple[Any, httpx.Headers]:
    """The JSON document a `200` answer to `method url` carries, and the answer's headers;
    FetchFailed (naming `what`, e.g. "JWKS") otherwise."""
    try:
        async with asyncio.timeout(within.total_seconds()):
            request = client.stream(method, url, headers=dict(headers or {}), data=data)
            async with request as response:
                if response.status_code != httpx.codes.OK:
                    raise FetchFailed(f"HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchFailed(f"{what} larger than {max_bytes} bytes")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchFailed(f"{what} larger than {max_bytes} bytes")
    except TimeoutError:
        raise FetchFailed(f"no {what} within {within.total_seconds():g} s") from None
    except httpx.HTTPError as exc:
        refused = refused_by(exc)
        if refused is not None:
            raise FetchFailed(f"refused: {refused}") from None
        raise FetchFailed(f"{type(exc).__name__}: {exc}") from None
    try:
        return json.loads(body), response.headers
    except (ValueError, RecursionError):
        raise FetchFailed(f"the {what} is not JSON") from None

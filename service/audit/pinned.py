"""Checkpoint keys pinned by an auditor: a JWKS read from a file or fetched from a URL, kept
apart from the database it is used to check (`audit verify --keys`, `AUTHLEDGER_AUDIT_KEYS`).

`authledger audit keys` prints the JWKS to pin: every signing key's public part derived from
its sealed private key (service/crypto/signing.py), so a public key someone wrote into the database
is never among them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from service.audit.signed import BadCheckpoint, Jwk, key_set

FETCH_TIMEOUT = 10.0
MAX_BYTES = 1 << 20


class PinnedKeysError(Exception):
    """The pinned keys cannot be read; the message says where and why."""


async def load_pinned(source: str) -> dict[str, Jwk]:
    """The keys of the JWKS at `source` (an http(s) URL or a file), by kid."""
    text = await _fetch(source) if source.startswith(("http://", "https://")) else _read(source)
    try:
        document: Any = json.loads(text)
        keys = key_set(document if isinstance(document, dict) else {})
    except (ValueError, BadCheckpoint) as exc:
        raise PinnedKeysError(f"{source}: {exc}") from None
    if not keys:
        raise PinnedKeysError(f"{source}: the JWKS holds no key with a kid")
    return keys


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PinnedKeysError(f"{path}: {exc}") from None


async def _fetch(url: str) -> str:
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise PinnedKeysError(f"{url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise PinnedKeysError(f"{url}: HTTP {response.status_code}")
    if len(response.content) > MAX_BYTES:
        raise PinnedKeysError(f"{url}: larger than {MAX_BYTES} bytes")
    return response.text

"""What a resource server asks a follower of the feed, on each request: is this bearer value
(or its hash, or a JWT's `jti`) revoked? Both followers answer alike from their local set
(subscriber/state.py): the NATS one (`client.RevocationSubscriber`) and the push receiver
(`webhook.RevocationWebhook`).
"""

from __future__ import annotations

import base64
import json
import re

from subscriber.state import State
from subscriber.wire import hash_prefix, token_prefix

_HEX = re.compile(r"^[0-9a-fA-F]+$")


class RevokedSet:
    """The questions, asked of `self._state` (set by the follower)."""

    _state: State

    def __len__(self) -> int:
        return len(self._state)

    def is_revoked(self, token_or_hash: str) -> bool:
        """Whether a bearer value, its hex SHA-256 (64 digits) or the 16-digit prefix of that
        belongs to an ended credential. A JWT's `jti` is checked too."""
        value = token_or_hash.strip()
        if len(value) in (16, 64) and _HEX.match(value):
            return hash_prefix(value) in self._state.prefixes
        if token_prefix(value) in self._state.prefixes:
            return True
        jti = unverified_jti(value)
        return jti is not None and jti in self._state.jtis

    def is_revoked_credential(self, credential_id: str) -> bool:
        return credential_id in self._state.credentials


def unverified_jti(token: str) -> str | None:
    """A JWT's `jti`, read without verifying (only to look it up in the revoked set)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    jti = claims.get("jti") if isinstance(claims, dict) else None
    return jti if isinstance(jti, str) else None

"""The keys derived from `AUTHLEDGER_SECRET_KEY`, and the two a rotation keeps.

Every key comes from `derive_key(secret, purpose)` (service/crypto/tokens.py), except after a
rotation (`authledger rotate-secret`, service/crypto/rotation.py) for the purposes in `RETAINED`:
values made with those live in the immutable log (the blind index of e-mails and phones in
registration and user events; subscribers' sealed webhook secrets in subscription events), so
their keys cannot change without making the log unreadable or unsearchable. The rotation
stores them in `retained_keys`, wrapped under a key derived from the current secret; a process
loads them at start-up (`load_server_keys`), and a secret that does not open them is the wrong
one (an old secret after a rotation): `WrongSecret`, so no process writes under it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.sql import load_queries
from service.crypto.tokens import BLIND_INDEX_KEY, PUSH_SECRET_KEY, RETAINED_KEY_WRAP, derive_key

RETAINED = (BLIND_INDEX_KEY, PUSH_SECRET_KEY)
NONCE_BYTES = 12
Q = load_queries("service.crypto", "secret_keys.sql")
Db = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool


class WrongSecret(Exception):
    """The configured secret does not open the database's retained keys."""


@dataclass(frozen=True)
class ServerKeys:
    """The server secret and the retained keys a rotation left (none: never rotated)."""

    secret: str | bytes = field(repr=False)
    retained: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)

    def key(self, purpose: bytes) -> bytes:
        """The 32-byte key for `purpose`: the retained one if any, else derived."""
        return self.retained.get(purpose) or derive_key(self.secret, purpose)


def wrap(secret: str | bytes, purpose: bytes, key: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(derive_key(secret, RETAINED_KEY_WRAP)).encrypt(nonce, key, purpose)


def unwrap(secret: str | bytes, purpose: bytes, wrapped: bytes) -> bytes:
    """The retained key; InvalidTag when `secret` is not the one that wrapped it."""
    aead = AESGCM(derive_key(secret, RETAINED_KEY_WRAP))
    return aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], purpose)


async def load_server_keys(db: Db, secret: str | bytes) -> ServerKeys:
    """The keys for `secret`, with the retained ones; WrongSecret if they do not open."""
    retained: dict[bytes, bytes] = {}
    for row in await db.fetch(Q["retained"]):
        purpose = row["purpose"].encode()
        try:
            retained[purpose] = unwrap(secret, purpose, row["wrapped"])
        except InvalidTag:
            raise WrongSecret(
                "AUTHLEDGER_SECRET_KEY does not open this database's keys: it was rotated "
                "(`authledger rotate-secret`); start with the new secret"
            ) from None
    return ServerKeys(secret, retained)

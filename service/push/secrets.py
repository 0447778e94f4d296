"""Subscribers' bearer secrets, sealed at rest.

A subscriber may give a secret that its receiver checks on every delivery (sent as
`Authorization: Bearer <secret>`, RFC 8935 §2.1 leaves authentication to the parties). The
worker needs the plain value to send it, so it is encrypted, not hashed: AES-256-GCM under a
key derived from `AUTHLEDGER_SECRET_KEY` (purpose `authledger push secret v1`; a rotation of
the secret keeps that key, service/crypto/secret_keys.py, so pass the loaded `ServerKeys`), with the
subscription id as associated data, so a sealed value copied onto another subscription does
not open. The sealed form, `v1.<base64url(nonce || ciphertext)>`, is what the log and the read
model hold; the plain value exists only in the request that set it and in the worker's memory
while it sends.
"""

from __future__ import annotations

import base64
import os
import re

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.crypto.secret_keys import ServerKeys
from service.crypto.tokens import PUSH_SECRET_KEY

PREFIX = "v1."
NONCE_BYTES = 12
# RFC 6750 b64token: what may follow "Bearer " in an Authorization header.
BEARER_SECRET = re.compile(r"[A-Za-z0-9._~+/-]+=*")


class SecretUnreadable(Exception):
    """A sealed secret that does not open under this server's key and this subscription."""


def _key(server_secret: str | bytes | ServerKeys) -> bytes:
    keys = server_secret if isinstance(server_secret, ServerKeys) else ServerKeys(server_secret)
    return keys.key(PUSH_SECRET_KEY)


def seal_secret(server_secret: str | bytes | ServerKeys, subscription_id: str, secret: str) -> str:
    nonce = os.urandom(NONCE_BYTES)
    aead = AESGCM(_key(server_secret))
    sealed = nonce + aead.encrypt(nonce, secret.encode(), subscription_id.encode())
    return PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def open_secret(server_secret: str | bytes | ServerKeys, subscription_id: str, sealed: str) -> str:
    if not sealed.startswith(PREFIX):
        raise SecretUnreadable("unknown sealing format")
    body = sealed[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        aead = AESGCM(_key(server_secret))
        plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], subscription_id.encode())
    except Exception:  # bad base64, short input, wrong key or subscription (InvalidTag)
        raise SecretUnreadable("the secret does not open (wrong server key?)") from None
    return plain.decode()

"""Personal data, crypto-shredded: sealed under a key per data subject, erased by destroying it.

Emails, phone numbers, names and client IPs enter events only as `pii1.<subject>.<blob>`
strings: AES-256-GCM under the subject's data key, with the subject id as associated data, so
a sealed value moved to another subject does not open. Data keys live in `subject_keys`,
wrapped (AES-256-GCM) under a key-encryption key derived from `AUTHLEDGER_SECRET_KEY`.
`erase` empties the wrapped key: every sealed value of that subject, in the log, projections
and backups of either, becomes unreadable while the events and their hash chain stay intact.
(The old row version lingers until Postgres vacuums it, and in backups until they rotate.)

Lookups by e-mail or phone go through `blind_index`: an HMAC of the normalised value, equal
for equal inputs, useless without the server secret. Nothing here logs a value. Its key is
one of those a rotation of the secret keeps (service/crypto/secret_keys.py): give the Sealer the
loaded `ServerKeys`, not the bare secret, wherever it computes blind indexes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.planning import fetch_planned_now
from events.rows import ColumnForm, column_form
from events.sql import load_queries
from service.crypto.secret_keys import ServerKeys
from service.crypto.tokens import BLIND_INDEX_KEY, PII_KEK

PREFIX = "pii1"
NONCE_BYTES = 12
DATA_KEY_BYTES = 32
IndexKind = Literal["email", "phone"]
Db = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool

Q = load_queries("service.crypto", "subject_keys.sql")
column_form(Q["insert_key"], ColumnForm(Q["insert_keys"]))


@dataclass(frozen=True, slots=True)
class FreshSubject:
    """A new data subject's key, made in memory: values are sealed under it at once, and its
    row goes into the transaction of the events that first carry them (`write`), so a
    registration costs no commit of its own for its key."""

    subject_id: str
    data_key: bytes = field(repr=False)
    wrapped: bytes = field(repr=False)

    def seal(self, plaintext: str) -> str:
        return encrypt(self.data_key, self.subject_id, plaintext)

    @property
    def write(self) -> tuple[str, tuple[str, bytes]]:
        """The statement that stores the wrapped key (events.appends.Write)."""
        return Q["insert_key"], (self.subject_id, self.wrapped)


class SealError(Exception):
    """A sealed value is malformed, was tampered with, or names a subject with no key."""


class SubjectErased(SealError):
    """The subject's key was erased: nothing new can be sealed for it."""


def normalise_email(value: str) -> str:
    return value.strip().lower()


def normalise_phone(value: str) -> str:
    """Digits only, keeping one leading `+`: `+1 (555) 010-0000` -> `+15550100000`."""
    stripped = value.strip()
    digits = "".join(c for c in stripped if c.isascii() and c.isdigit())
    return ("+" if stripped.startswith("+") else "") + digits


def encrypt(data_key: bytes, subject_id: str, plaintext: str) -> str:
    """Seal `plaintext` for `subject_id` under `data_key` (pure; `Sealer.seal` finds the key)."""
    check_subject_id(subject_id)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(data_key).encrypt(nonce, plaintext.encode(), subject_id.encode())
    blob = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
    return f"{PREFIX}.{subject_id}.{blob}"


def parse(sealed: str) -> tuple[str, bytes]:
    """The subject id and the nonce || ciphertext of a sealed string."""
    head, _, rest = sealed.partition(".")
    subject_id, _, blob = rest.rpartition(".")
    if head != PREFIX or not subject_id or not blob:
        raise SealError("not a sealed value")
    try:
        raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    except (binascii.Error, ValueError):
        raise SealError("sealed value is not base64url") from None
    if len(raw) < NONCE_BYTES + 16:
        raise SealError("sealed value is too short")
    return subject_id, raw


def subject_of(sealed: str) -> str:
    """The data subject a sealed string was sealed for."""
    return parse(sealed)[0]


def decrypt(data_key: bytes, sealed: str) -> str:
    """Open a sealed string with its subject's data key (pure); SealError when it fails."""
    subject_id, raw = parse(sealed)
    try:
        plain = AESGCM(data_key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], subject_id.encode())
    except InvalidTag:
        raise SealError("sealed value does not authenticate") from None
    return plain.decode()


def check_subject_id(subject_id: str) -> str:
    if (
        not subject_id
        or not subject_id.isascii()
        or not subject_id.isprintable()
        or " " in subject_id
    ):
        raise ValueError("a subject id is non-empty printable ASCII without spaces")
    return subject_id


class Sealer:
    """Seals, opens and erases personal data; keeps recently used data keys in memory.

    The cache (a bounded LRU of unwrapped data keys) is per process. `erase` evicts the key
    here; service processes hear of an erase made elsewhere on the log feed (`user.erased`,
    `registration.erased`) and `forget` the key; and no key is used from memory for longer
    than `max_age` seconds, which bounds how long any process (a worker, say) can still open
    an erased subject's values. Keys are cached only once their row is committed, so a
    rolled-back transaction never leaves a key in the cache that the database does not hold.
    """

    def __init__(
        self, secret_key: str | bytes | ServerKeys, *, cache_size: int = 1024, max_age: float = 60.0
    ) -> None:
        self._cache: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._cache_size = cache_size
        self._max_age = max_age
        self.adopt(secret_key if isinstance(secret_key, ServerKeys) else ServerKeys(secret_key))

    def adopt(self, keys: ServerKeys) -> None:
        """Use `keys` (loaded with the retained ones) from now on."""
        self.keys = keys
        self._kek = AESGCM(keys.key(PII_KEK))
        self._index_key = keys.key(BLIND_INDEX_KEY)

    async def seal(self, conn: Db, subject_id: str, plaintext: str) -> str:
        """Encrypt `plaintext` for `subject_id`, creating the subject's data key on first use."""
        check_subject_id(subject_id)
        data_key = await self._data_key(conn, subject_id, create=True)
        if data_key is None:
            raise SubjectErased(f"subject {subject_id} was erased")
        return encrypt(data_key, subject_id, plaintext)

    def fresh(self, subject_id: str) -> FreshSubject:
        """A key for a subject nobody has sealed for yet (a new registration's id): nothing
        is stored until the caller's append writes `FreshSubject.write`, and `remember` is
        called once that has committed."""
        check_subject_id(subject_id)
        data_key = AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
        return FreshSubject(subject_id, data_key, self._wrap_key(subject_id, data_key))

    def remember(self, subject: FreshSubject) -> None:
        """Cache a fresh subject's key once its row is committed."""
        self._keep(subject.subject_id, subject.data_key)

    async def preload(self, conn: Db, sealed: Sequence[str]) -> None:
        """Read the data keys that `sealed` values were sealed under, those not in the cache,
        in one query planned for this read (events.planning), and cache the ones committed
        before it (a mailer's round: one query for its rows, not one a row). Erased and
        unknown subjects, and values that do not parse, are left to `open`, which answers
        for them."""
        now = time.monotonic()
        subjects = []
        for value in sealed:
            with contextlib.suppress(SealError):
                subjects.append(subject_of(value))
        wanted = [
            s for s in dict.fromkeys(subjects)
            if s not in self._cache or now - self._cache[s][1] >= self._max_age
        ]  # fmt: skip
        if not wanted:
            return
        for row in await fetch_planned_now(conn, Q["select_keys"], wanted):
            if row["wrapped_key"] and row["settled"]:
                subject_id = row["subject_id"]
                self._keep(subject_id, self._unwrap(subject_id, row["wrapped_key"]))

    def keep_read(self, subject_id: str, wrapped: bytes) -> None:
        """Cache a subject's key from its `subject_keys` row, committed before another query
        read it (an ID-JAG's read ahead), unless a fresh one is cached; one that does not
        unwrap is left to `seal` and `open`, which answer for it."""
        cached = self._cache.get(subject_id)
        if cached is None or time.monotonic() - cached[1] >= self._max_age:
            with contextlib.suppress(SealError):
                self._keep(subject_id, self._unwrap(subject_id, wrapped))

    def _keep(self, subject_id: str, data_key: bytes) -> None:
        self._cache[subject_id] = (data_key, time.monotonic())
        self._cache.move_to_end(subject_id)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def open(self, conn: Db, sealed: str) -> str | None:
        """The plaintext of a sealed value, or None when its subject was erased."""
        subject_id, _ = parse(sealed)
        data_key = await self._data_key(conn, subject_id, create=False)
        return None if data_key is None else decrypt(data_key, sealed)

    async def erase(self, conn: Db, subject_id: str, *, now: datetime | None = None) -> None:
        """Destroy the subject's data key (idempotent; the first erase time is kept).

        A subject erased before anything was sealed for it is recorded too, so later seals
        for that id are refused.
        """
        check_subject_id(subject_id)
        await conn.execute(Q["erase_key"], subject_id, now)
        self.forget(subject_id)

    def forget(self, *subject_ids: str) -> None:
        """Drop cached data keys, e.g. when another process announces an erase."""
        for subject_id in subject_ids:
            self._cache.pop(subject_id, None)

    def blind_index(self, value: str, kind: IndexKind = "email") -> str:
        """Hex HMAC-SHA256 of the normalised value, for equality lookups without plain text."""
        normalised = normalise_email(value) if kind == "email" else normalise_phone(value)
        message = f"{kind}:{normalised}".encode()
        return hmac.new(self._index_key, message, hashlib.sha256).hexdigest()

    async def _data_key(self, conn: Db, subject_id: str, *, create: bool) -> bytes | None:
        cached = self._cache.get(subject_id)
        if cached is not None:
            data_key, cached_at = cached
            if time.monotonic() - cached_at < self._max_age:
                self._cache.move_to_end(subject_id)
                return data_key
            del self._cache[subject_id]
        if create:
            wrapped_new = self._wrap(subject_id)
            row = await conn.fetchrow(Q["create_or_select_key"], subject_id, wrapped_new)
        else:
            row = await conn.fetchrow(Q["select_key"], subject_id)
        if row is None and create:  # a racing first seal committed after our snapshot
            row = await conn.fetchrow(Q["select_key"], subject_id)
        if row is None:
            raise SealError(f"no data key for subject {subject_id}")
        wrapped: bytes = row["wrapped_key"]
        if not wrapped:
            return None
        data_key = self._unwrap(subject_id, wrapped)
        # Committed before this transaction began, or by this very statement (a pool runs each
        # in a transaction of its own): safe to remember.
        if row["settled"] or isinstance(conn, asyncpg.Pool):
            self._keep(subject_id, data_key)
        return data_key

    def wrap_data_key(self, subject_id: str, data_key: bytes) -> bytes:
        """A subject's data key wrapped under this sealer's key (a rotation rewraps with it)."""
        return self._wrap_key(subject_id, data_key)

    def unwrap_data_key(self, subject_id: str, wrapped: bytes) -> bytes:
        """The data key in a `subject_keys` row; SealError if this sealer's key did not wrap it."""
        return self._unwrap(subject_id, wrapped)

    def _wrap(self, subject_id: str) -> bytes:
        return self._wrap_key(subject_id, AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8))

    def _wrap_key(self, subject_id: str, data_key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._kek.encrypt(nonce, data_key, _wrap_aad(subject_id))

    def _unwrap(self, subject_id: str, wrapped: bytes) -> bytes:
        try:
            return self._kek.decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(subject_id)
            )
        except InvalidTag:
            raise SealError(f"data key of {subject_id} does not unwrap (wrong secret?)") from None


def _wrap_aad(subject_id: str) -> bytes:
    return b"subject_keys:" + subject_id.encode()

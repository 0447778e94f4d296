"""`authledger rotate-secret`: move everything sealed under AUTHLEDGER_SECRET_KEY to a new one.

What the secret protects, and what the rotation does with each (docs/security.md, "Rotating
the secret key"):

- subject data keys (`subject_keys`, the personal data in the log): rewrapped;
- access-token and checkpoint signing keys (`signing_keys`): rewrapped, the same keys;
- the link tokens of queued claim mail (`mail_outbox`): resealed;
- the blind index key and the webhook-secret key, whose values the log keeps: retained, i.e.
  stored in `retained_keys` wrapped under the new secret (service/crypto/secret_keys.py);
- one-time codes (HMAC in the log, at most OTP_TTL old) and rate-limit buckets (HMAC keys):
  derived from the new secret from now on; codes shown before no longer match, buckets start
  empty.

All of it in one transaction that locks those tables, so a failure changes nothing. It is
idempotent: a row that already opens under the new secret is left alone, so running it again
(say, after a process that still had the old secret wrote a row) finishes the job. It refuses
to run while other sessions are connected to the database (`--force` overrides), since a
running service would keep writing under the old secret.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog
from cryptography.exceptions import InvalidTag

from events.sql import load_queries
from service.crypto.pii import Sealer, SealError
from service.crypto.secret_keys import RETAINED, unwrap, wrap
from service.crypto.signing import unwrap_private_key, wrap_private_key
from service.mail.outbox import open_link_token, seal_link_token
from service.observability.logging import redact_url
from service.settings import ConfigError, Settings, check_secret_key

Q = load_queries("service.crypto", "rotation.sql")
PAGE = 1_000  # subject keys rewrapped per statement
log = structlog.get_logger("service.crypto.rotation")


class RotationError(Exception):
    """A refusal or a failure, as one line (exit status 1); nothing was changed."""


@dataclass
class Rotated:
    """How many rows were moved to the new secret (and how many already were)."""

    subject_keys: int = 0
    signing_keys: int = 0
    queued_mail: int = 0
    retained_keys: int = 0
    already: int = 0

    def line(self) -> str:
        return (
            f"rotated: {self.subject_keys} subject keys, {self.signing_keys} signing keys, "
            f"{self.queued_mail} queued mails rewrapped, {self.retained_keys} keys retained "
            f"({self.already} rows were already under the new secret)"
        )


def read_new_secret(path: str) -> str:
    """The new secret from a file (`-`: standard input), checked like the setting."""
    try:
        raw = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--new-key-file: cannot read {path}: {exc.strerror}") from None
    try:
        return check_secret_key(raw)
    except ValueError as exc:
        raise ConfigError(f"--new-key-file: the new secret {exc}") from None


async def rotate(conn: asyncpg.Connection, old: str, new: str) -> Rotated:
    """Move every key and sealed value from `old` to `new`, in one transaction."""
    if old == new:
        raise RotationError("the new secret is the current one")
    done = Rotated()
    async with conn.transaction():
        await conn.execute(Q["lock"])
        await _retained(conn, old, new, done)
        await _subject_keys(conn, old, new, done)
        await _signing_keys(conn, old, new, done)
        await _queued_mail(conn, old, new, done)
    return done


async def _retained(conn: asyncpg.Connection, old: str, new: str, done: Rotated) -> None:
    stored = {row["purpose"]: row["wrapped"] for row in await conn.fetch(Q["retained"])}
    for purpose in RETAINED:
        wrapped = stored.get(purpose.decode())
        if wrapped is None:  # the first rotation: the key the old secret derives
            key = Sealer(old).keys.key(purpose)
        else:
            try:
                unwrap(new, purpose, wrapped)
                done.already += 1
                continue
            except InvalidTag:
                pass
            try:
                key = unwrap(old, purpose, wrapped)
            except InvalidTag:
                raise RotationError(
                    f"retained key {purpose.decode()!r} opens under neither secret"
                ) from None
        await conn.execute(Q["retain"], purpose.decode(), wrap(new, purpose, key))
        done.retained_keys += 1


async def _subject_keys(conn: asyncpg.Connection, old: str, new: str, done: Rotated) -> None:
    before, after = Sealer(old), Sealer(new)
    last = ""
    while rows := await conn.fetch(Q["subject_keys"], last, PAGE):
        ids, rewrapped = [], []
        for row in rows:
            subject_id, wrapped = row["subject_id"], row["wrapped_key"]
            try:
                after.unwrap_data_key(subject_id, wrapped)
                done.already += 1
                continue
            except SealError:
                pass
            try:
                data_key = before.unwrap_data_key(subject_id, wrapped)
            except SealError:
                raise RotationError(
                    f"the data key of {subject_id} opens under neither secret"
                ) from None
            ids.append(subject_id)
            rewrapped.append(after.wrap_data_key(subject_id, data_key))
        if ids:
            await conn.execute(Q["rewrap_subject_keys"], ids, rewrapped)
        done.subject_keys += len(ids)
        last = rows[-1]["subject_id"]


async def _signing_keys(conn: asyncpg.Connection, old: str, new: str, done: Rotated) -> None:
    for row in await conn.fetch(Q["signing_keys"]):
        kid, wrapped = row["kid"], row["private_key"]
        try:
            unwrap_private_key(new, kid, wrapped)
            done.already += 1
            continue
        except RuntimeError:
            pass
        try:
            private_key = unwrap_private_key(old, kid, wrapped)
        except RuntimeError:
            raise RotationError(f"signing key {kid} opens under neither secret") from None
        await conn.execute(Q["rewrap_signing_key"], kid, wrap_private_key(new, kid, private_key))
        done.signing_keys += 1


async def _queued_mail(conn: asyncpg.Connection, old: str, new: str, done: Rotated) -> None:
    for row in await conn.fetch(Q["queued_mail"]):
        attempt_id, sealed = row["attempt_id"], row["link_token_sealed"]
        try:
            open_link_token(new, attempt_id, sealed)
            done.already += 1
            continue
        except InvalidTag:
            pass
        try:
            token = open_link_token(old, attempt_id, sealed)
        except InvalidTag:
            raise RotationError(
                f"the link of queued mail {attempt_id} opens under neither secret"
            ) from None
        await conn.execute(Q["reseal_mail"], attempt_id, seal_link_token(new, attempt_id, token))
        done.queued_mail += 1


async def run_rotation(settings: Settings, new_key_file: str, *, force: bool) -> Rotated:
    """The command: check, connect, refuse while others are connected, rotate."""
    old = settings.secret_key
    if not old:
        raise ConfigError("AUTHLEDGER_SECRET_KEY: required by rotate-secret (the current secret)")
    new = read_new_secret(new_key_file)
    try:
        # as the owner role, like migrate: it rewrites keys and locks tables the runtime may not
        conn = await asyncpg.connect(settings.owner_url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        url = redact_url(settings.owner_url)
        raise RotationError(f"cannot connect to {settings.owner_variable} ({url}): {exc}") from None
    try:
        others = int(await conn.fetchval(Q["other_sessions"]))
        if others and not force:
            raise RotationError(
                f"{others} other session(s) are connected to the database: stop every serve "
                "and worker first (they would keep writing under the old secret), or pass "
                "--force if none of them is authledger"
            )
        try:
            done = await rotate(conn, old, new)
        except asyncpg.UndefinedTableError:
            raise RotationError("the database is not migrated: run `authledger migrate`") from None
    finally:
        await conn.close()
    log.info(
        "secret.rotated",
        subject_keys=done.subject_keys,
        signing_keys=done.signing_keys,
        queued_mail=done.queued_mail,
        retained_keys=done.retained_keys,
        already=done.already,
    )
    return done

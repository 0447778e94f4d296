"""A subscriber's local state: the revoked set and its checkpoint, in one SQLite file.

Each change (one message, or one page of a resync) is one SQLite transaction holding the new
revocations and the new checkpoint together, so a subscriber killed at any instant restarts
from a checkpoint that matches its set. The set is also kept in memory (credential ids, token
hash prefixes, `jti`s) for `is_revoked`, which is a few set lookups. The file is in WAL mode
with `synchronous=NORMAL`: a commit survives a crash of the process; a power loss may lose the
last commits, which the subscriber then simply reads again from the stream.

The checkpoint: `position`, the log position up to which every revocation of the tenant is
held (None before the first message when starting live), and `seq`, the last stream sequence
read. `feed` names the stream, subject and service, so a file is never reused for another feed.

The webhook receiver (`subscriber/webhook.py`) keeps the same file format under a feed of its
own: `record_set` adds what one Security Event Token says (the credential id, and an access
token's `jti`) with the SET's `jti`, so a redelivered SET changes nothing. A SET carries no
token hash, so such a row has an empty `token_hash_prefix` (listed in `incomplete`, never in
`prefixes`) until `apply` brings the authoritative entry of that credential and completes it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from subscriber.wire import Revocation

_HEADER = re.compile(r"^--\s*name:\s*(\S+)\s*$", re.MULTILINE)


def _queries() -> dict[str, str]:
    text = resources.files("subscriber").joinpath("state.sql").read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


Q = _queries()


class WrongFeed(ValueError):
    """The state file follows another stream, subject or service."""


@dataclass(frozen=True)
class Checkpoint:
    position: int | None
    seq: int


@dataclass(frozen=True)
class PushedRevocation:
    """What one Security Event Token says about an ended credential (subscriber/webhook.py)."""

    set_jti: str  # the SET's own `jti`: the key of de-duplication
    txn: str | None  # the log event's id
    credential_id: str
    token_jti: str | None  # an access token's `jti` (its credential id); None for an API key
    reason: str  # `revoked:<reason>`, `revoked` or `expired`, as the feed's messages say it
    effective_at: datetime
    received_at: datetime
    token_hash_prefix: str | None = None  # when the SET carries it (authledger's extension)


class State:
    """The revoked set and checkpoint; `path` None keeps them in memory only."""

    def __init__(self, path: str | Path | None, feed: str) -> None:
        self._db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(Q["schema"])
        self.credentials: set[str] = set()
        self.prefixes: set[str] = set()
        self.jtis: set[str] = set()
        self.incomplete: set[str] = set()  # credential ids held without their token hash
        row = self._db.execute(Q["load_checkpoint"]).fetchone()
        if row is not None and row[0] != feed:
            self._db.close()
            raise WrongFeed(f"{path} follows {row[0]}, not {feed}")
        self.feed = feed
        self.checkpoint = Checkpoint(row[1], row[2]) if row is not None else Checkpoint(0, 0)
        for credential_id, prefix, jti in self._db.execute(Q["load_revoked"]):
            self._remember(credential_id, prefix, jti)

    def __len__(self) -> int:
        return len(self.credentials)

    def close(self) -> None:
        self._db.close()

    def _remember(self, credential_id: str, prefix: str, jti: str | None) -> None:
        self.credentials.add(credential_id)
        if prefix:
            self.prefixes.add(prefix)
            self.incomplete.discard(credential_id)
        else:
            self.incomplete.add(credential_id)
        if jti:
            self.jtis.add(jti)

    def apply(
        self, items: Sequence[Revocation], position: int | None, seq: int
    ) -> list[Revocation]:
        """Add `items` and move the checkpoint, in one transaction; returns the new items."""
        fresh = [item for item in items if item.credential_id not in self.credentials]
        rows = [
            (i.credential_id, i.token_hash_prefix, i.jti, i.registration_id, i.user_id,
             i.reason, i.effective_at.isoformat(), i.position)
            for i in fresh
        ]  # fmt: skip
        completed = [item for item in items if item.credential_id in self.incomplete]
        completions = [
            (i.token_hash_prefix, i.jti, i.registration_id, i.user_id, i.reason,
             i.effective_at.isoformat(), i.position, i.credential_id)
            for i in completed
        ]  # fmt: skip
        self._db.execute("BEGIN")
        try:
            self._db.executemany(Q["insert_revoked"], rows)
            self._db.executemany(Q["complete_revoked"], completions)
            self._db.execute(Q["save_checkpoint"], (self.feed, position, seq))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        for item in fresh + completed:
            self._remember(item.credential_id, item.token_hash_prefix, item.jti)
        self.checkpoint = Checkpoint(position, seq)
        return fresh

    def move(self, position: int | None, seq: int) -> None:
        """Move the checkpoint alone."""
        self.apply((), position, seq)

    def has_set(self, set_jti: str) -> bool:
        """Whether the SET with this `jti` was recorded already."""
        return self._db.execute(Q["seen_set"], (set_jti,)).fetchone() is not None

    def record_set(self, pushed: PushedRevocation) -> bool:
        """Record a SET and the credential it ends, in one transaction (the checkpoint does
        not move: a SET carries no log position). False, changing nothing, when a SET with
        this `jti` was recorded before."""
        self._db.execute("BEGIN")
        try:
            taken = self._db.execute(
                Q["insert_set"],
                (pushed.set_jti, pushed.txn, pushed.credential_id, pushed.received_at.isoformat()),
            ).rowcount
            if taken and pushed.credential_id not in self.credentials:
                self._db.execute(
                    Q["insert_revoked"],
                    (pushed.credential_id, pushed.token_hash_prefix or "", pushed.token_jti,
                     None, None, pushed.reason, pushed.effective_at.isoformat(), 0),
                )  # fmt: skip
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        if taken and pushed.credential_id not in self.credentials:
            self._remember(pushed.credential_id, pushed.token_hash_prefix or "", pushed.token_jti)
        return bool(taken)

"""Scoped operator credentials by token, read from `access_credentials` and kept briefly.

A check hashes the presented token (SHA-256) and looks the hash up: in memory when a recent
lookup found it (or found nothing), else in the read model, one indexed query. Memory is used
only while the credential cache's log feed is live, and every `access.*` event that feed reads
(or that this process appends) empties it, so a grant or a revocation made by any process or
by the CLI takes effect here as soon as the feed reads it (LISTEN/NOTIFY: milliseconds), and
at the latest after `ttl` seconds if the feed fell behind unnoticed. While the feed is down
every check reads the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

from events.access import ACCESS_EVENTS
from events.catalogue import event_tag
from events.envelope import RecordedEvent
from events.sql import load_queries
from service.caches.credentials import CredentialCache
from service.crypto.tokens import token_hash

Q = load_queries("projections", "access.sql")
ACCESS_EVENT_TYPES = frozenset(event_tag(cls) for cls in ACCESS_EVENTS)


@dataclass(frozen=True, slots=True)
class Holder:
    """Who presented a credential the access rule admitted."""

    credential_id: str  # `bootstrap` for AUTHLEDGER_ADMIN_TOKEN
    scope: str
    tenant_id: str | None = None  # the tenant it acts in; None: every tenant
    client_id: str | None = None  # introspection credentials only

    @property
    def actor(self) -> str:
        """The actor its changes record."""
        return f"admin:{self.credential_id}"


BOOTSTRAP = Holder(credential_id="bootstrap", scope="operator")


class AccessCache:
    def __init__(
        self,
        pool: asyncpg.Pool,
        feed: CredentialCache | None = None,
        *,
        ttl: float = 10.0,
        max_entries: int = 10_000,
    ) -> None:
        self._pool, self._feed, self._ttl, self._max = pool, feed, ttl, max_entries
        self._entries: dict[str, tuple[Holder | None, float, int]] = {}
        self._generation = 0
        if feed is not None:
            feed.add_hook(ACCESS_EVENT_TYPES, self.forget)

    def forget(self, _: RecordedEvent | None = None) -> None:
        """A credential was granted or revoked somewhere: read the database again."""
        self._generation += 1
        self._entries.clear()

    def _resets(self) -> int:
        return self._feed.stats.resets if self._feed is not None else -1

    async def holder(self, token: str) -> Holder | None:
        """The live credential whose token this is; None for unknown or revoked."""
        digest = token_hash(token)
        live = self._feed is not None and self._feed.live
        if self._feed is not None:
            self._feed.follow()
        if live:
            found = self._entries.get(digest)
            if found is not None and found[1] > time.monotonic() and found[2] == self._resets():
                return found[0]
        generation, resets = self._generation, self._resets()
        row = await self._pool.fetchrow(Q["by_token_hash"], digest)
        holder = None if row is None else Holder(**dict(row))
        still_live = self._feed is not None and self._feed.live
        if still_live and generation == self._generation and resets == self._resets():
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[digest] = (holder, time.monotonic() + self._ttl, resets)
        return holder

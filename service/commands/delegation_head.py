"""Where a delegation's stream stands, read from its projection row, not folded.

`delegation.used` is appended at every ID-JAG registration of a subject, so its stream grows
with each use: folding it on every registration cost time in proportion to the subject's
history (issue 11). The `delegations` row holds what the commands decide on (the user, the
stream's version for the expected-version check, the generation) and is written in the
append's own transaction, so a command reading it and then appending at its version is as
safe as one that folded the stream: a concurrent append moves the version and the loser
retries (`retrying`).
"""

from __future__ import annotations

from dataclasses import dataclass

from events.sql import load_queries
from service.commands.context import Context

Q = load_queries("projections", "delegations.sql")


@dataclass(frozen=True, slots=True)
class DelegationHead:
    user_id: str
    version: int
    generation: int  # how often it was revoked (v0.6 assertions carry it)


async def delegation_head(ctx: Context, delegation_id: str) -> DelegationHead | None:
    """The delegation's head, or None when its subject never registered here."""
    row = await ctx.pool.fetchrow(Q["head"], delegation_id, ctx.tenant.tenant_id)
    if row is None:
        return None
    return DelegationHead(str(row["user_id"]), int(row["version"]), int(row["generation"]))


@dataclass(slots=True)
class HeadAhead:
    """A delegation's head read ahead of its command, beside the issuer's trust entry, with
    its user's data key row (one round trip for all: `trust_list.lookup_with_head`). `read`
    answers from it once, and only for that delegation, handing the key to the Sealer's cache
    then; any other read, a retry's after a conflict included, goes to the row again."""

    delegation_id: str | None = None  # None: nothing was read ahead
    head: DelegationHead | None = None
    wrapped_key: bytes | None = None  # the user's `subject_keys` row, as read with the head
    key_settled: bool = False  # that row committed before the read

    async def read(self, ctx: Context, delegation_id: str) -> DelegationHead | None:
        if delegation_id != self.delegation_id:
            return await delegation_head(ctx, delegation_id)
        self.delegation_id = None
        if self.head is not None and self.wrapped_key and self.key_settled:
            ctx.sealer.keep_read(self.head.user_id, self.wrapped_key)
        return self.head

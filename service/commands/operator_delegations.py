"""O-R, the delegation part (design section 8): an operator's revocation by registration,
user or provider also ends the ID-JAG subjects in that scope, so the service-signed
assertions the v0.6 door gave them stop exchanging.

Each delegation in scope gets `delegation.revoked` (reason `operator`, the operator's note
is the credential events'), which raises its generation: an assertion carries the generation
it was minted at, and V6 refuses any other (O-F). The subject's credentials end in the
credential batches that follow (service/commands/revocation.py), so the event names none.
By registration, the scope is the delegation whose id shares the deterministic `reg_…`'s 22
hex (an ID-JAG subject's id); a random registration id names none. A delegation stays: a
later fresh ID-JAG is served again (O9), at the new generation.
"""

from __future__ import annotations

from events.delegation import STREAM_TYPE as DELEGATION
from events.delegation import DelegationRevoked
from events.envelope import Metadata
from events.sql import load_queries
from service.commands.context import Change, Context, retrying
from service.commands.delegation_head import delegation_head
from service.domain.exchange import delegation_of

Q = load_queries("service.commands", "operator_delegations.sql")
BATCH = 500
REASON = "operator"


async def end_delegations(
    ctx: Context, scope: str, target: str, metadata: Metadata
) -> tuple[str, ...]:
    """`delegation.revoked` (operator) for each delegation of the scope (`registration`,
    `user` or `issuer`; any other names none); the ids of those it ended."""
    if scope == "registration":
        delegation_id = delegation_of(target)
        if delegation_id is None:
            return ()
        query, key = Q["one"], delegation_id
    elif scope in ("user", "issuer"):
        query, key = Q["of_user" if scope == "user" else "of_issuer"], target
    else:
        return ()
    ended: list[str] = []
    after = ""
    while True:
        rows = await ctx.pool.fetch(query, ctx.tenant.tenant_id, key, after, BATCH)
        for row in rows:
            delegation_id = str(row["delegation_id"])
            if await _end_one(ctx, delegation_id, metadata):
                ended.append(delegation_id)
        if len(rows) < BATCH:
            return tuple(ended)
        after = str(rows[-1]["delegation_id"])


async def _end_one(ctx: Context, delegation_id: str, metadata: Metadata) -> bool:
    async def attempt() -> bool:
        head = await delegation_head(ctx, delegation_id)
        if head is None:
            return False
        stream = ctx.stream(DELEGATION, delegation_id)
        revoked = DelegationRevoked(reason=REASON)
        await ctx.record(
            [Change(stream, head.version, [revoked])], metadata=metadata, now=ctx.clock.now()
        )
        return True

    return await retrying(attempt)

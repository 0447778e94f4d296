"""`GET /admin/revocations?after=<position>&limit=<n>`: the authoritative list of ended
credentials, for subscribers that found a gap in the revocation feed (`subscriber/`).

Read from the log, not from a projection, by the same code as the publisher
(`service/revocations/log.py`), so each entry is the very message the feed carries: the
verified claims plus `signed`, the compact JWS signed now with the active key (a subscriber
verifies these exactly like the NATS messages, and a message whose key left the JWKS long ago
comes back signed by a current one). The page is complete up to `through`: every ending event
of the tenant at or below it is listed (or lies at or below `after`); `head` is the log's head
when it was read, and `more` says whether to ask again with `after=<through>`.
Behind an operator, tenant admin or revocation-feed credential of the tenant: `service/http/app.py`
mounts the handler on the admin router (one router per path: `POST /admin/revocations` lives
there too), and the handler's `opt` widens what the router accepts.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from service.commands.context import Context
from service.domain.access import FEED as FEED_SCOPES
from service.http.access import ACCEPTS, AdminRefused
from service.http.answers import RevocationPage
from service.http.bodies import POSITION_MAX, json_reply
from service.http.openapi import FEED, documented, ok
from service.revocations.log import Chain, ending_after, revocations
from subscriber.wire import sign, to_json

PATH = "/admin/revocations"
MAX_LIMIT = 1000
PAGE_DOC = documented(
    answers={200: ok(RevocationPage, "Ended credentials, each as the feed carries it")},
    refusals=(400, 401),
    security=FEED,
)


@get(PATH, summary="Ended credentials after a log position (the feed's authoritative state)",
     operation_class=PAGE_DOC, opt={ACCEPTS: FEED_SCOPES})  # fmt: skip
async def list_revocations(
    ctx: NamedDependency[Context], after: FromQuery[int] = 0, limit: FromQuery[int] = 500
) -> Response[bytes]:
    if not 0 <= after <= POSITION_MAX or not 1 <= limit <= MAX_LIMIT:
        raise AdminRefused(400, "invalid_request", f"after >= 0 and 1 <= limit <= {MAX_LIMIT}")
    key = ctx.keyring.active
    if key is None:  # command_context made one: unreachable
        raise RuntimeError("no active signing key")
    tenant = ctx.tenant.tenant_id
    async with ctx.pool.acquire() as conn:
        window = await ending_after(conn, after, limit, tenant)
        found = await revocations(
            conn, window.events, Chain(), issuer=ctx.tenant.issuer, now=ctx.clock.now()
        )
    entries: list[dict[str, Any]] = [
        {**to_json(claims), "signed": sign(claims, key.private_key, key.kid)} for claims in found
    ]
    body = {
        "tenant": tenant,
        "after": after,
        "through": max(window.through, after),
        "head": window.head,
        "more": window.full,
        "revocations": entries,
    }
    return json_reply(body)

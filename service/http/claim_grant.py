"""V7 at `POST /oauth2/token`: the claim grant's form, limit and answer (docs/design/
v06-dialect.md, section 5.2), over service/commands/claim_grant.py. The token endpoint
(service/http/oauth.py) hands its parsed form here when `grant_type` is the claim URN.

`claim_token` required (at most MAX_TOKEN characters); unknown parameters ignored (RFC 6749
3.2). Limit: `poll_per_ip`, before the token is looked up; pacing per token is the command's.
The 200 is RFC 6749 5.1's token answer plus `identity_assertion` and its ISO
`assertion_expires`; every refusal is RFC 6749's shape with RFC 8628's codes.
"""

from __future__ import annotations

from litestar import Response

from service.commands.claim_grant import poll
from service.commands.context import Caller, Context
from service.domain.errors import ProtocolError
from service.http.bodies import json_reply, timestamp
from service.http.v06_docs import MAX_TOKEN
from service.runtime.resources import Resources


async def claim_grant_reply(
    ctx: Context, resources: Resources, who: Caller, form: dict[str, str]
) -> Response[bytes]:
    claim_token = form.get("claim_token")
    if claim_token is None or len(claim_token) > MAX_TOKEN:
        raise ProtocolError("invalid_request", f"claim_token is required, at most {MAX_TOKEN}")
    tenant = ctx.tenant
    await resources.limiter.per_ip(tenant.tenant_id, "poll_per_ip", who.client_ip)
    delivered = await poll(ctx, claim_token, who)
    return json_reply(
        {
            "access_token": delivered.token.plain,
            "token_type": "Bearer",
            "expires_in": delivered.token.expires_in,
            "scope": " ".join(delivered.token.scopes),
            "identity_assertion": delivered.identity_assertion,
            "assertion_expires": timestamp(delivered.assertion_expires),
        }
    )

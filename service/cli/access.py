"""`authledger access grant|list|revoke`: scoped operator credentials from the command line
(service/commands/access.py), straight against the database like the other operator commands,
recorded with the actor `cli:<login>`.

`grant` prints one JSON line with the credential and its token: the only time the token is
shown. `list` prints JSON lines without tokens; `revoke` refuses the credential from then on.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import datetime

from service.cli.operator import OperatorError, cli_caller, operator_context
from service.commands.access import grant_access, list_access, revoke_access
from service.domain.access import SCOPES, TENANT_BOUND, AccessRefused, NotGranted
from service.settings import Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    access = commands.add_parser(
        "access", help="scoped operator credentials: operator, tenant admin, introspection, ..."
    )
    actions = access.add_subparsers(dest="action", required=True, metavar="ACTION")
    grant = actions.add_parser("grant", help="grant a credential; prints its token once")
    grant.add_argument("--scope", required=True, choices=SCOPES)
    grant.add_argument("--label", required=True, help="who or what holds it, e.g. prometheus")
    grant.add_argument("--tenant", help="the tenant it acts in (tenant_admin, introspection, "
                       "revocation_feed; default: the default tenant)")  # fmt: skip
    grant.add_argument("--client-id", help="introspection: the resource server's client id")
    listing = actions.add_parser("list", help="print the credentials as JSON lines (no tokens)")
    listing.add_argument("--tenant", help="only this tenant's")
    listing.add_argument("--revoked", action="store_true", help="include revoked ones")
    revoke = actions.add_parser("revoke", help="revoke a credential: refused from then on")
    revoke.add_argument("credential_id")
    revoke.add_argument("--reason")


async def run_access(settings: Settings, args: argparse.Namespace) -> list[str]:
    """The lines to print."""
    async with operator_context(settings) as ctx:
        if args.action == "list":
            found = await list_access(ctx, tenant_id=args.tenant, with_revoked=args.revoked)
            return [json.dumps(_shown(asdict(entry))) for entry in found]
        if args.action == "revoke":
            try:
                revoked = await revoke_access(ctx, args.credential_id, cli_caller(), args.reason)
            except NotGranted:
                raise OperatorError(f"no credential {args.credential_id}") from None
            return [f"{'revoked' if revoked else 'already revoked'} {args.credential_id}"]
        tenant = args.tenant
        if tenant is None and args.scope in TENANT_BOUND:
            tenant = ctx.tenant.tenant_id
        try:
            granted = await grant_access(ctx, cli_caller(), scope=args.scope, label=args.label,
                                         tenant_id=tenant, client_id=args.client_id)  # fmt: skip
        except AccessRefused as exc:
            raise OperatorError(str(exc)) from None
        access = granted.access
        line = {
            "credential_id": access.credential_id,
            "scope": access.scope,
            "tenant_id": access.tenant_id,
            "client_id": access.client_id,
            "label": access.label,
            "granted_at": granted.granted_at.isoformat(),
            "token": granted.token,
        }
        return [json.dumps(line)]


def _shown(fields: dict[str, object]) -> dict[str, object]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}

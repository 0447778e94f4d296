"""`authledger trust add|list|remove`, `revoke`, `erase`, `tenant …` and `access
grant|list|revoke`: the admin API's changes, made straight against the database (so they work
while no service process runs), recorded as the same events with the actor `cli:<login>`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg

from events.clock import SystemClock
from events.store import EventStore
from service.commands.context import Caller, Context
from service.commands.erasure import NobodyToErase, erase_person
from service.commands.revocation import Scope, revoke
from service.commands.tenants import (
    configure_tenant,
    create_tenant,
    list_tenants,
    set_tenant_active,
)
from service.commands.trust_list import BadEntry, as_json, distrust, listed, requested_entry, trust
from service.crypto.pii import Sealer
from service.crypto.secret_keys import ServerKeys, load_server_keys
from service.crypto.signing import KeyRing
from service.domain.tenants import TenantRefused
from service.domain.trust_list import NotTrusted
from service.providers.trust import ALGORITHMS
from service.settings import Settings
from service.tenancy.config import TenantConfig

SCOPES: tuple[Scope, ...] = ("credential", "registration", "user", "issuer")


class OperatorError(Exception):
    """A refusal to print as one line (exit status 1)."""


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trust_cmd = commands.add_parser("trust", help="the trust list of agent providers")
    actions = trust_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="trust an issuer, or change its terms")
    add.add_argument("issuer", help="the provider's `iss`, exactly")
    add.add_argument("--jwks-uri", help="pin the JWKS URL (default <issuer>/.well-known/jwks.json)")
    add.add_argument("--alg", action="append", choices=ALGORITHMS, help="allowed algorithm")
    add.add_argument("--display-name")
    link = add.add_mutually_exclusive_group()
    link.add_argument(
        "--link-by-email",
        action="store_true",
        help="link its subjects to existing users by verified email (opt-in)",
    )
    link.add_argument("--no-link-by-email", action="store_true",
                      help="never link by email (the default; kept for scripts)")  # fmt: skip
    add.add_argument("--client-id", action="append", default=[], help="accepted CIMD URL")
    add.add_argument("--require-amr", action="append", default=[], help="required amr value")
    actions.add_parser("list", help="print the trust list as JSON lines")
    remove = actions.add_parser("remove", help="stop trusting an issuer")
    remove.add_argument("issuer")
    remove.add_argument("--reason")
    revoke_cmd = commands.add_parser(
        "revoke", help="revoke a credential, or every credential of a registration, user or issuer"
    )
    target = revoke_cmd.add_mutually_exclusive_group(required=True)
    for scope in SCOPES:
        target.add_argument(f"--{scope}", metavar="ID" if scope != "issuer" else "ISSUER")
    revoke_cmd.add_argument("--reason", help="a note recorded in every revocation event")
    tenant_cmd = commands.add_parser("tenant", help="tenants: other services this ledger fronts")
    tenant_actions = tenant_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    tenant_add = tenant_actions.add_parser("add", help="create a tenant")
    tenant_configure = tenant_actions.add_parser(
        "configure", help="change a tenant's hosts (replaced) or settings (merged)"
    )
    for sub in (tenant_add, tenant_configure):
        sub.add_argument("tenant_id")
        sub.add_argument("--host", action="append", help="a Host it answers (repeat)")
        sub.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                         help="a setting, e.g. public_url=https://auth.acme.example")  # fmt: skip
    tenant_configure.add_argument("--unset", action="append", default=[], metavar="NAME")
    tenant_actions.add_parser("list", help="print every tenant as JSON lines")
    for verb in ("disable", "enable"):
        sub = tenant_actions.add_parser(verb, help=f"{verb} a tenant")
        sub.add_argument("tenant_id")
        sub.add_argument("--reason")
    erase_cmd = commands.add_parser(
        "erase", help="erase a person: destroy the keys of their personal data (irreversible)"
    )
    person = erase_cmd.add_mutually_exclusive_group(required=True)
    person.add_argument("--user", metavar="USER_ID")
    person.add_argument("--email", help="needs AUTHLEDGER_SECRET_KEY (the blind index)")
    erase_cmd.add_argument("--reason", help="recorded in the erasure events")


@asynccontextmanager
async def operator_context(settings: Settings) -> AsyncIterator[Context]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    store = EventStore(pool)
    # Trust and revocation write no personal data and sign nothing, so without the server's
    # secret a one-off key stands in for the sealer and the key ring, which stay unused.
    secret = settings.secret_key or secrets.token_urlsafe(32)
    try:
        keys = await load_server_keys(pool, secret) if settings.secret_key else ServerKeys(secret)
        yield Context(
            store=store,
            tenant=TenantConfig.from_settings(settings),
            sealer=Sealer(keys),
            secret_key=secret,
            clock=SystemClock(),
            keyring=KeyRing(secret),
        )
    finally:
        await store.close()
        await pool.close()


def cli_caller() -> Caller:
    return Caller(actor=f"cli:{getpass.getuser()}")


async def run_trust(settings: Settings, args: argparse.Namespace) -> list[str]:
    """The lines to print."""
    async with operator_context(settings) as ctx:
        if args.action == "list":
            return [
                json.dumps({**as_json(entry), "version": version, "updated_at": at.isoformat()})
                for entry, version, at in await listed(ctx)
            ]
        if args.action == "remove":
            try:
                await distrust(ctx, args.issuer, cli_caller(), args.reason)
            except NotTrusted:
                raise OperatorError(f"{args.issuer} is not on the trust list") from None
            return [f"removed {args.issuer}"]
        try:
            entry = requested_entry(
                settings,
                issuer=args.issuer,
                jwks_uri=args.jwks_uri,
                algorithms=args.alg or (),
                display_name=args.display_name,
                link_by_verified_email=args.link_by_email,
                client_ids=args.client_id,
                required_amr=args.require_amr,
            )
        except BadEntry as exc:
            raise OperatorError(str(exc)) from None
        change = await trust(ctx, entry, cli_caller())
        return [f"{change.outcome} {args.issuer}"]


async def run_revoke(settings: Settings, args: argparse.Namespace) -> list[str]:
    scope, target = next((s, getattr(args, s)) for s in SCOPES if getattr(args, s) is not None)
    async with operator_context(settings) as ctx:
        revoked = await revoke(ctx, scope, target, cli_caller(), args.reason)
    ended = [f"ended registration {rid}" for rid in revoked.registration_ids]  # O-R
    return [
        *revoked.credential_ids,
        *ended,
        f"revoked {revoked.count} credential(s) of {scope} {target}",
    ]


async def run_erase(settings: Settings, args: argparse.Namespace) -> list[str]:
    if args.email is not None and settings.secret_key is None:
        raise OperatorError("erasing by email needs AUTHLEDGER_SECRET_KEY (to find the address)")
    async with operator_context(settings) as ctx:
        try:
            erased = await erase_person(
                ctx, cli_caller(), user_id=args.user, email=args.email, reason=args.reason
            )
        except NobodyToErase as exc:
            raise OperatorError(str(exc)) from None
    return [
        *(f"erased {subject}" for subject in erased.subjects),
        *(f"revoked {credential}" for credential in erased.revoked),
    ]


def _pairs(items: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise OperatorError(f"--set {item!r}: write NAME=VALUE")
        pairs[name.strip().lower()] = value.strip()
    return pairs


async def run_tenant(settings: Settings, args: argparse.Namespace) -> list[str]:
    async with operator_context(settings) as ctx:
        try:
            return await _tenant_action(ctx, settings, args)
        except TenantRefused as exc:
            raise OperatorError(str(exc)) from None


async def _tenant_action(ctx: Context, settings: Settings, args: argparse.Namespace) -> list[str]:
    if args.action == "list":
        return [
            json.dumps({"tenant_id": t.tenant_id, "hosts": list(t.hosts),
                        "settings": dict(t.settings), "active": t.active, "version": t.version})
            for t in await list_tenants(ctx)
        ]  # fmt: skip
    if args.action == "add":
        await create_tenant(ctx, settings, args.tenant_id, hosts=args.host or [],
                            settings=_pairs(args.set), caller=cli_caller())  # fmt: skip
        return [f"created {args.tenant_id}"]
    if args.action == "configure":
        current = {t.tenant_id: t for t in await list_tenants(ctx)}.get(args.tenant_id)
        merged = None
        if args.set or args.unset:
            merged = {**(dict(current.settings) if current else {}), **_pairs(args.set)}
            for name in args.unset:
                merged.pop(name.lower(), None)
        changed = await configure_tenant(ctx, settings, args.tenant_id, cli_caller(),
                                         hosts=args.host, settings=merged)  # fmt: skip
        return [f"{'configured' if changed else 'unchanged'} {args.tenant_id}"]
    active = args.action == "enable"
    changed = await set_tenant_active(ctx, args.tenant_id, active, cli_caller(), args.reason)
    return [f"{f'{args.action}d' if changed else 'unchanged'} {args.tenant_id}"]

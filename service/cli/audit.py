"""`authledger audit timeline|state|export|verify|keys|check`: the audit API's answers,
straight from the database (so they work while no service process runs); `check` needs not
even that, only the export file (and, optionally, a JWKS the auditor trusts).

Client IPs open only with `AUTHLEDGER_SECRET_KEY` (else they show as `sealed`); with it,
`export` also signs a checkpoint at the head when none follows the slice yet (`--no-anchor`:
never), and publishes it off the database when `AUTHLEDGER_NATS_URL` is set.

`verify` exits 0 when it vouches for the log (verified against pinned keys and the newest
published checkpoint), 1 when it finds a break, 3 when the chain holds but it cannot vouch
(keys not pinned, or no published checkpoint to compare), 2 when the pinned keys cannot be
read. `keys` prints the JWKS to pin (public keys derived from the sealed private keys).
`check` exits 1 when the file does not verify and anchor.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from events.clock import SystemClock
from service.audit.as_of import state
from service.audit.check import check
from service.audit.export import export
from service.audit.pinned import PinnedKeysError, load_pinned
from service.audit.published import CheckpointStream, read_published
from service.audit.publisher import Publisher
from service.audit.signed import Jwk
from service.audit.signing_round import sign_now
from service.audit.subjects import KINDS, Bound, UnknownSubject, resolve
from service.audit.timeline import DEFAULT_LIMIT, timeline
from service.audit.verify import VerifyReport, load_keys, verify
from service.cli.progress import ProgressReport
from service.crypto.pii import Sealer
from service.crypto.signing import KeyRing
from service.settings import Settings
from service.tenancy.config import TenantConfig

VERIFIED, BROKEN, KEYS_UNREADABLE, UNVOUCHED = 0, 1, 2, 3


class AuditError(Exception):
    """A refusal to print as one line (exit status 1)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser(
        "audit", help="timelines, state as of an instant, exports with proofs, chain checks"
    )
    actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    about = {
        "timeline": "every event of a subject: time, actor, client IP, reason, correlation",
        "state": "a subject's state as of --at INSTANT and/or --position N (default: now)",
        "export": "a subject's events as JSON Lines with the proof to check them offline",
    }
    for name, help_text in about.items():
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("kind", choices=KINDS)
        sub.add_argument("id", help="its id (a provider: its URL or its iss_… id)")
        sub.add_argument("--at", type=_instant, help="ISO 8601 instant, e.g. 2026-11-01T10:00Z")
        sub.add_argument("--position", type=int, help="a log position")
        sub.add_argument("--tenant", help="tenant id (default: the configured one)")
        if name == "timeline":
            sub.add_argument("--after", type=int, default=0, help="only events after this")
            sub.add_argument("--limit", type=int, default=DEFAULT_LIMIT)
        if name == "export":
            sub.add_argument("-o", "--output", type=Path, help="file to write (default stdout)")
            sub.add_argument(
                "--no-anchor",
                action="store_true",
                help="do not sign a checkpoint now when none follows the slice",
            )
    verify_cmd = actions.add_parser(
        "verify",
        help="walk the hash chain and signed checkpoints; vouch only with pinned keys "
        "(exit 0 verified, 1 broken, 2 keys unreadable, 3 holds but not vouched for)",
    )
    verify_cmd.add_argument(
        "--keys",
        "--jwks",
        dest="keys",
        metavar="FILE_OR_URL",
        help="the checkpoint keys to trust, a JWKS file or URL (default AUTHLEDGER_AUDIT_KEYS)",
    )
    keys_cmd = actions.add_parser(
        "keys", help="print the checkpoint keys' JWKS to pin (needs AUTHLEDGER_SECRET_KEY)"
    )
    keys_cmd.add_argument("-o", "--output", type=Path, help="file to write (default stdout)")
    check_cmd = actions.add_parser("check", help="check an export offline (no database)")
    check_cmd.add_argument("file", type=Path)
    check_cmd.add_argument("--jwks", type=Path, help="the checkpoint keys the auditor trusts")


def _instant(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an ISO 8601 instant, got {raw!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("the instant needs its time zone (e.g. Z or +00:00)")
    return value


def _jwks(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AuditError(f"{path}: {exc}") from None
    return loaded


def run_check(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """`audit check FILE`: nothing but the file (and the JWKS, when given)."""
    try:
        report = check(args.file.read_text(encoding="utf-8"), trusted_jwks=_jwks(args.jwks))
    except (OSError, UnicodeDecodeError, AuditError) as exc:
        print(f"authledger audit check: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report.verdict}: {report.events} events in {report.runs} run(s), "
        f"{report.checkpoints} signed checkpoint(s); keys: {report.keys}",
        file=out,
    )
    for problem in report.problems:
        print(f"  {problem}", file=out)
    return 0 if report.verdict == "verified" else 1


@asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


async def run(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    """Every action but `check`; what it prints goes to `out`. Returns the exit status."""
    if args.action == "verify":
        return await _verify(settings, args.keys or settings.audit_keys, out)
    async with _pool(settings) as pool:
        if args.action == "keys":
            return await _print_keys(settings, pool, args.output, out)
        tenant = args.tenant or TenantConfig.from_settings(settings).tenant_id
        bound = Bound(position=args.position, at=args.at)
        clock = SystemClock()
        async with pool.acquire() as conn:
            try:
                subject = await resolve(conn, tenant, args.kind, args.id)
            except UnknownSubject as exc:
                raise AuditError(str(exc)) from None
            if args.action == "timeline":
                sealer = Sealer(settings.secret_key) if settings.secret_key else None
                found = await timeline(
                    conn, subject, bound, sealer=sealer, after=args.after, limit=args.limit
                )
                for entry in found.entries:
                    print(json.dumps(entry, ensure_ascii=False), file=out)
                if found.next_after is not None:
                    print(f"more: --after {found.next_after}", file=sys.stderr)
                return 0
            if args.action == "state":
                answer = await state(conn, subject, bound, now=clock.now())
                print(json.dumps(answer, indent=2, ensure_ascii=False), file=out)
                return 0
            signer = None
            if settings.secret_key and not args.no_anchor:
                ring = KeyRing(settings.secret_key)

                async def signer() -> object:
                    if not settings.nats_url:
                        return await sign_now(pool, ring, clock)
                    publisher = Publisher(
                        settings.nats_url, CheckpointStream.from_settings(settings)
                    )
                    try:
                        return await sign_now(pool, ring, clock, publisher)
                    finally:
                        await publisher.close()

            target = out if args.output is None else args.output.open("w", encoding="utf-8")
            # on stderr; not while the lines themselves go to a terminal
            shown = args.output is not None or not out.isatty()
            try:
                with ProgressReport("audit export", enabled=shown) as progress:
                    lines = export(
                        conn, subject, bound, now=clock.now(), sign_now=signer, progress=progress
                    )
                    async for line in lines:
                        target.write(line)
            finally:
                if target is not out:
                    target.close()
            return 0


async def _verify(settings: Settings, source: str | None, out: TextIO) -> int:
    """The log against the pinned keys (from `source`) and the newest published checkpoint."""
    try:
        pinned = None if source is None else await load_pinned(source)
    except PinnedKeysError as exc:
        print(f"authledger audit verify: {exc}", file=sys.stderr)
        return KEYS_UNREADABLE
    published = await read_published(settings.nats_url, CheckpointStream.from_settings(settings))
    async with _pool(settings) as pool:
        with ProgressReport("audit verify", "positions") as progress:
            report = await verify(pool, trusted_keys=pinned, published=published, progress=progress)
    _print_verify(report, out)
    return {"verified": VERIFIED, "broken": BROKEN}.get(report.verdict, UNVOUCHED)


async def _print_keys(
    settings: Settings, pool: asyncpg.Pool, output: Path | None, out: TextIO
) -> int:
    """The JWKS of every checkpoint-signing key, derived from the sealed private keys."""
    if not settings.secret_key:
        raise AuditError(
            "AUTHLEDGER_SECRET_KEY is needed: the keys are derived from the sealed ones"
        )
    ring = KeyRing(settings.secret_key)
    await ring.load(pool)
    derived: dict[str, Jwk] = {key.kid: key.public_jwk for key in ring.keys}
    for kid in sorted(set(await load_keys(pool)) - set(derived)):
        print(
            f"authledger audit keys: key {kid} signed checkpoints but has no private key here "
            "(or its row was refused): not printed",
            file=sys.stderr,
        )
    text = json.dumps({"keys": list(derived.values())}, indent=2) + "\n"
    target = out if output is None else output.open("w", encoding="utf-8")
    try:
        target.write(text)
    finally:
        if target is not out:
            target.close()
    return 0


def _print_verify(report: VerifyReport, out: TextIO) -> None:
    first = report.first_break
    verdict = report.verdict if first is None else f"BROKEN at position {first.position}"
    print(
        f"{verdict}: {report.checked:,} events checked up to position {report.head:,} in "
        f"{report.seconds:.1f} s ({round(report.rate):,} events/s); "
        f"{report.checkpoints} signed checkpoint(s) hold (keys: {report.keys}), "
        f"anchored up to position {report.anchored:,}; published: {_published(report)}",
        file=out,
    )
    for problem in report.problems:
        print(f"  position {problem.position}: {problem.reason}", file=out)
    for reason in report.unvouched:
        print(f"  not vouched: {reason}", file=out)


def _published(report: VerifyReport) -> str:
    anchor = report.published
    if anchor is None:
        return "not compared"
    if anchor.refused is not None:
        return f"does not verify (stream {anchor.stream})"
    if anchor.position is None:
        return f"none (stream {anchor.stream})"
    state = "holds" if anchor.held else "NOT held"
    return f"position {anchor.position:,} {state} (stream {anchor.stream})"

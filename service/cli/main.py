"""The `authledger` command line.

Exit status: 0 on a clean stop, 1 when an operational failure stops start-up (one line on
stderr), 2 on a bad invocation or a bad `AUTHLEDGER_*` variable (one line naming it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

import structlog

from service.settings import ConfigError, Settings, unknown_variables


def _port(raw: str) -> int:
    if not raw.isdigit() or not 0 <= int(raw) <= 65_535:
        raise argparse.ArgumentTypeError(f"a port number 0-65535, got {raw!r}")
    return int(raw)


def _positive(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, got {raw!r}")
    return int(raw)


# Commands whose arguments are all defined here: for them the operator, audit and subscribe
# parsers (whose modules import most of the service) are not built, so `worker` and `migrate`
# load only what they run (`serve --workers N` imports the service once, in the parent, for
# its forked children to share: service.runtime.processes).
_OWN_COMMANDS = ("dev", "serve", "worker", "migrate", "replay", "rotate-secret")


def build_parser(*, only_own: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authledger",
        description="Event-sourced credential service for AI agents. "
        "Configured by AUTHLEDGER_* environment variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dev = commands.add_parser(
        "dev", help="embedded Postgres and NATS, migrations, HTTP and workers in one process"
    )
    serve = commands.add_parser("serve", help="serve HTTP against external Postgres and NATS")
    for sub in (dev, serve):
        sub.add_argument("--host", default="127.0.0.1", help="address to listen on")
        sub.add_argument("--port", type=_port, default=8000, help="port to listen on")
    serve.add_argument("--workers", type=_positive, default=1, help="HTTP processes to run")
    commands.add_parser("worker", help="run every background worker until SIGTERM/SIGINT")
    commands.add_parser(
        "migrate",
        help="apply pending migrations and the runtime role's grants, as the owner role "
        "(AUTHLEDGER_OWNER_DATABASE_URL, else AUTHLEDGER_DATABASE_URL)",
    )
    replay = commands.add_parser(
        "replay", help="rebuild every read model from the log and switch to it (blue/green)"
    )
    replay.add_argument(
        "--verify", action="store_true", help="only compare a rebuild with the live tables"
    )
    rotate = commands.add_parser(
        "rotate-secret",
        help="rewrap every key under a new AUTHLEDGER_SECRET_KEY (stop serve and worker first)",
    )
    rotate.add_argument(
        "--new-key-file",
        required=True,
        metavar="PATH",
        help="a file holding the new secret ('-': standard input); never an argument",
    )
    rotate.add_argument(
        "--force", action="store_true", help="rotate although other sessions are connected"
    )
    if only_own:
        return parser
    from service.cli.operator import add_parsers

    add_parsers(commands)
    from service.cli.access import add_parser as add_access

    add_access(commands)
    from subscriber.cli import add_parser as add_subscribe

    add_subscribe(commands)
    from service.cli.audit import add_parser as add_audit

    add_audit(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    own = bool(given) and given[0] in _OWN_COMMANDS and not {"-h", "--help"} & set(given)
    args = build_parser(only_own=own).parse_args(given)
    if args.command == "audit" and args.action == "check":  # the file alone: no settings
        from service.cli.audit import run_check

        return run_check(args)
    stack = _dev_stack(args)
    if args.command == "subscribe":  # a resource server's view: no database, no secrets
        from service.dev.card import live_nats_url
        from subscriber.cli import run as subscribe

        follow = "AUTHLEDGER_NATS_URL" in stack  # the dev stack's NATS, wherever it moves
        return subscribe(
            args,
            {**stack, **os.environ},
            nats_url=lambda: live_nats_url(os.environ) if follow else None,
        )
    unknown = unknown_variables(os.environ)  # a misspelling is named, never fatal
    try:
        settings = Settings.from_env(os.environ, args.command, fallback=stack)
    except ConfigError as exc:
        for variable in unknown:  # the hint may explain the error (a required name misspelt)
            print(variable.line(), file=sys.stderr)
        print(exc, file=sys.stderr)
        return 2

    from service.observability.logging import configure_logging
    from service.runtime.listening import StartupError

    configure_logging(settings)
    log = structlog.get_logger("service.settings")
    for variable in unknown:
        log.warning("settings.unknown_variable", variable=variable.name, closest=variable.closest)
    commands: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
        "dev": _dev,
        "serve": _serve,
        "worker": _worker,
        "migrate": _migrate,
        "replay": _replay,
        "trust": _operator,
        "revoke": _operator,
        "erase": _operator,
        "tenant": _operator,
        "access": _operator,
        "audit": _audit,
        "rotate-secret": _rotate_secret,
    }
    try:
        return commands[args.command](settings, args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"authledger {args.command}: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):  # a second Ctrl-C forces the stop
        return 130
    except Exception:
        structlog.get_logger("service.cli.main").exception(f"{args.command}.crashed")
        return 1


# What each command may take from a running `authledger dev` (service/dev/card.py) when the
# environment leaves it unset; `dev`, `serve` and `worker` take nothing from it.
_FROM_DEV_STACK = ("AUTHLEDGER_DATABASE_URL", "AUTHLEDGER_SECRET_KEY", "AUTHLEDGER_PUBLIC_URL")
_SUBSCRIBE_FROM_DEV_STACK = (
    "AUTHLEDGER_NATS_URL",
    "AUTHLEDGER_PUBLIC_URL",
    "AUTHLEDGER_ADMIN_TOKEN",
)


def _dev_stack(args: argparse.Namespace) -> dict[str, str]:
    """The variables the data folder's live dev stack gives this command, said on stderr."""
    if args.command in ("dev", "serve", "worker"):
        return {}
    from service.dev.card import from_data_dir

    wanted: tuple[str, ...] = _FROM_DEV_STACK
    if args.command == "subscribe":
        flags = {"AUTHLEDGER_NATS_URL": args.nats_url, "AUTHLEDGER_PUBLIC_URL": args.service_url}
        wanted = tuple(name for name in _SUBSCRIBE_FROM_DEV_STACK if not flags.get(name))
    found = from_data_dir(os.environ, wanted)
    if found.line is not None:
        print(found.line, file=sys.stderr, flush=True)
    return found.variables


def _run(coro: Coroutine[Any, Any, None]) -> None:
    from service.runtime.processes import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(coro)


def _public_url_given() -> bool:
    return bool(os.environ.get("AUTHLEDGER_PUBLIC_URL", "").strip())


def _dev(settings: Settings, args: argparse.Namespace) -> int:
    from service.dev.run import run_dev

    _run(run_dev(settings, host=args.host, port=args.port, public_url_set=_public_url_given()))
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from service.runtime.listening import bind_sockets, http_url
    from service.runtime.processes import serve_in_processes

    sockets = bind_sockets(args.host, args.port, args.workers)
    if not _public_url_given():
        settings = replace(settings, public_url=http_url(args.host, sockets[0].getsockname()[1]))
    if args.workers > 1:
        return serve_in_processes(settings, sockets)
    from service.runtime.loops import serve

    [sock] = sockets

    try:
        _run(serve(settings, sock))
    finally:
        sock.close()
    return 0


def _worker(settings: Settings, _: argparse.Namespace) -> int:
    from service.runtime.loops import worker

    _run(worker(settings))
    return 0


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    from migrations.runner import available
    from service.runtime.loops import migrate_database

    applied: list[str] = []

    async def run() -> None:
        ran = await migrate_database(settings.owner_url, variable=settings.owner_variable)
        applied.extend(f"{m.version:04d}_{m.name}" for m in ran)

    _run(run())
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print(f"nothing to apply: the database has all {len(available())} migrations")
    return 0


def _rotate_secret(settings: Settings, args: argparse.Namespace) -> int:
    from service.crypto.rotation import Rotated, RotationError, run_rotation

    done: list[Rotated] = []

    async def run() -> None:
        done.append(await run_rotation(settings, args.new_key_file, force=args.force))

    try:
        _run(run())
    except RotationError as exc:
        print(f"authledger rotate-secret: {exc}", file=sys.stderr)
        return 1
    print(done[0].line())
    print(
        "next: start serve and worker with the new AUTHLEDGER_SECRET_KEY (the old one is refused)"
    )
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from projections.replay import Report, replay, verify
    from service.cli.progress import ProgressReport

    reports: list[Report] = []

    async def run() -> None:
        job = verify if args.verify else replay
        with ProgressReport("replay --verify" if args.verify else "replay") as progress:
            reports.append(await job(settings.owner_url, progress=progress))

    _run(run())
    [report] = reports
    done = "compared" if args.verify else "rebuilt and switched"
    print(
        f"{done}: {report.applied} events up to position {report.head} in "
        f"{report.seconds:.1f} s ({report.rate:,.0f} events/s)"
    )
    for difference in report.differences:
        print(difference.line())
    if not report.differences:
        print("no difference between the log and the live read models")
    elif not args.verify:
        print(f"{len(report.differences)} live row(s) were wrong; the rebuild replaced them")
    return 1 if args.verify and report.differences else 0


def _operator(settings: Settings, args: argparse.Namespace) -> int:
    from service.cli.access import run_access
    from service.cli.operator import OperatorError, run_erase, run_revoke, run_tenant, run_trust

    lines: list[str] = []
    jobs = {"trust": run_trust, "revoke": run_revoke, "erase": run_erase, "tenant": run_tenant,
            "access": run_access}  # fmt: skip

    async def run() -> None:
        lines.extend(await jobs[args.command](settings, args))

    try:
        _run(run())
    except OperatorError as exc:
        print(f"authledger {args.command}: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from service.cli.audit import AuditError, run

    status: list[int] = []

    async def job() -> None:
        status.append(await run(settings, args, sys.stdout))

    try:
        _run(job())
    except AuditError as exc:
        print(f"authledger audit {args.action}: {exc}", file=sys.stderr)
        return 1
    return status[0]


if __name__ == "__main__":
    sys.exit(main())

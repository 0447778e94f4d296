"""`authledger subscribe`: the revocation feed, live, one line per ended credential.

    authledger subscribe [--from-start] [--json] [--tenant T] [--state FILE]
                         [--nats-url URL] [--service-url URL]

The same command is `authledger-subscriber` where only the subscriber is installed (its own
distribution, subscriber/pyproject.toml).

What a person watching an incident wants: when, why, which credential, whose. Every line is a
verified message (signature checked against the service's JWKS). Without `--from-start` it
shows what happens from now on; with it, the whole feed the stream holds first (and, given
AUTHLEDGER_ADMIN_TOKEN, what the stream lost, from the service). `--state FILE` resumes where
the last run stopped. Gaps and rejected messages are reported on stderr.

Reads AUTHLEDGER_NATS_URL, AUTHLEDGER_PUBLIC_URL (the service, for its JWKS),
AUTHLEDGER_ADMIN_TOKEN (optional: repairs gaps), AUTHLEDGER_NATS_STREAM and
AUTHLEDGER_NATS_SUBJECT_PREFIX; no database, no secret key. Next to `authledger dev`, those
the environment leaves unset come from the dev stack (service/dev/card.py), and a restarted
dev's new NATS URL is followed. Losing NATS and finding it again are said on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from subscriber.client import (
    RevocationSubscriber,
    Source,
    SubscriberConfig,
    WhereNats,
    cancel_until_done,
)
from subscriber.state import WrongFeed
from subscriber.wire import Revocation, to_json


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`authledger subscribe`, in the service's own command line."""
    add_arguments(commands.add_parser("subscribe", help="print the revocation feed as it happens"))


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--from-start", action="store_true", help="replay the whole feed first")
    sub.add_argument("--json", action="store_true", help="one JSON object per line")
    sub.add_argument("--tenant", default="default")
    sub.add_argument("--state", metavar="FILE", help="keep the set and checkpoint here; resume")
    sub.add_argument("--nats-url", help="default: $AUTHLEDGER_NATS_URL")
    sub.add_argument("--service-url", help="default: $AUTHLEDGER_PUBLIC_URL")


def line(claims: Revocation, source: Source) -> str:
    """One readable line: time, reason, credential, kind, registration/user, position."""
    at = claims.effective_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    whose = f"registration={claims.registration_id or '-'} user={claims.user_id or '-'}"
    tail = "  [resync]" if source == "resync" else ""
    return (
        f"{at}  {claims.reason:<28} {claims.credential_id}  {claims.credential_kind:<12} "
        f"{whose}  position={claims.position}{tail}"
    )


def config_from(args: argparse.Namespace, env: Mapping[str, str]) -> SubscriberConfig:
    nats_url = args.nats_url or env.get("AUTHLEDGER_NATS_URL", "").strip()
    if not nats_url:
        raise ValueError(
            "AUTHLEDGER_NATS_URL: required (or --nats-url, or run it next to `authledger dev`)"
        )
    service = args.service_url or env.get("AUTHLEDGER_PUBLIC_URL", "").strip()
    return SubscriberConfig(
        nats_url=nats_url,
        service_url=service or "http://127.0.0.1:8000",
        tenant=args.tenant,
        state_path=args.state,
        admin_token=env.get("AUTHLEDGER_ADMIN_TOKEN", "").strip() or None,
        stream=env.get("AUTHLEDGER_NATS_STREAM", "").strip() or "AUTHLEDGER",
        subject_prefix=env.get("AUTHLEDGER_NATS_SUBJECT_PREFIX", "").strip() or "authledger",
        start="resume" if args.from_start or args.state else "live",
    )


def run(args: argparse.Namespace, env: Mapping[str, str], nats_url: WhereNats | None = None) -> int:
    """Print the feed until interrupted; 2 on a bad setting, 1 on a wrong state file.

    `nats_url`, when given, says where NATS is after a disconnect (the dev stack's card).
    """
    try:
        config = config_from(args, env)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")

    def show(claims: Revocation, source: Source) -> None:
        text = (
            json.dumps({**to_json(claims), "source": source}) if args.json else line(claims, source)
        )
        print(text, flush=True)

    async def follow() -> None:
        subscriber = RevocationSubscriber(config, on_revocation=show, nats_url=nats_url)
        mode = "from the start" if config.start == "resume" else "from now on"
        print(
            f"following {config.subject} on {config.stream} at {config.nats_url} {mode}",
            file=sys.stderr,
            flush=True,
        )
        # SIGINT/SIGTERM stop it here, not through asyncio.run's KeyboardInterrupt: a stop
        # cancels the follower until it has ended, whatever it was waiting on.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        task = asyncio.create_task(subscriber.run())
        caught_up = asyncio.create_task(subscriber.caught_up.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([task, caught_up, stopping], return_when=asyncio.FIRST_COMPLETED)
        if caught_up.done():
            print(f"caught up: {len(subscriber)} revoked; live", file=sys.stderr, flush=True)
            await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        caught_up.cancel()
        if not task.done():
            await cancel_until_done(task)
            return
        stopping.cancel()
        task.result()  # the follower ended on its own: a wrong feed (or a bug) says so

    try:
        asyncio.run(follow())
    except WrongFeed as exc:
        print(f"authledger subscribe: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`authledger-subscriber`: the same command, installed alone (authledger-subscriber's
    script); it reads the environment only (no dev stack to follow)."""
    parser = argparse.ArgumentParser(
        prog="authledger-subscriber", description="Print the revocation feed as it happens."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv), os.environ)

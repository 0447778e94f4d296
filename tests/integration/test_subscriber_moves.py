"""The subscriber follows NATS when it moves (a restarted `authledger dev` whose port was
taken), asking where it is now; and it says when it loses NATS and finds it again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from events.store import EventStore
from service.dev.embedded import EmbeddedNats, free_port
from subscriber.client import RevocationSubscriber, SubscriberConfig
from tests.support.backends import Backend
from tests.support.nats import NatsNames
from tests.support.revocations import (
    ADMIN_TOKEN,
    end,
    issue,
    publisher,
    publishing,
    serve_env,
    served,
    wait_published,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(180)]


@contextlib.asynccontextmanager
async def nats_on(folder: Path, port: int) -> AsyncIterator[EmbeddedNats]:
    server = await asyncio.to_thread(EmbeddedNats.start, folder, port=port)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def test_subscriber_follows_nats_to_its_new_url(  # noqa: PLR0917
    store: EventStore, pool: asyncpg.Pool, database_url: str, backend: Backend,
    nats_names: NatsNames, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """NATS stops and comes back on another port with the same store: the subscriber, told
    the new URL, connects there and goes on from its sequence; both moves are logged."""
    folder = Path(tempfile.mkdtemp(prefix="authledger-nats-moves-")) / "nats"
    first_port, second_port = free_port(), free_port()
    where = {"url": f"nats://127.0.0.1:{first_port}"}
    caplog.set_level(logging.WARNING, logger="authledger.subscriber")
    try:
        async with served(serve_env(database_url, backend.nats_url, nats_names)) as server:
            config = SubscriberConfig(
                nats_url=where["url"], service_url=server.url, stream=nats_names.stream,
                subject_prefix=nats_names.subject_prefix, admin_token=ADMIN_TOKEN,
                moved_check=0.2,
            )  # fmt: skip
            sub = RevocationSubscriber(config, nats_url=lambda: where["url"])
            task = asyncio.create_task(sub.run())
            try:
                async with nats_on(folder, first_port) as first:
                    feed = publisher(pool, first.url, nats_names)
                    async with publishing(feed):
                        before = await issue(store, 2)
                        await end(store, before)
                        await wait_published(pool, feed.config.checkpoint_name)
                        await wait_until(lambda: len(sub) == 2, within=30, what="len(sub) == 2")
                async with nats_on(folder, second_port) as second:
                    where["url"] = second.url
                    feed = publisher(pool, second.url, nats_names)
                    async with publishing(feed):
                        after = await issue(store, 3)
                        await end(store, after)
                        await wait_published(pool, feed.config.checkpoint_name)
                        await wait_until(lambda: len(sub) == 5, within=30, what="len(sub) == 5")
                    assert sub.stats.gaps == 0
                    assert all(sub.is_revoked(i.token) for i in before + after)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
    said = [r.getMessage() for r in caplog.records]
    assert f"NATS connection lost (nats://127.0.0.1:{first_port}); reconnecting" in said
    assert (
        f"NATS moved: nats://127.0.0.1:{second_port} now; connecting there "
        f"(was nats://127.0.0.1:{first_port})"
    ) in said
    assert f"NATS connected (nats://127.0.0.1:{second_port})" in said

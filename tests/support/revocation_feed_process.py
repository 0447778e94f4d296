"""Run one revocation publisher in its own process until killed, for the crash tests.

Usage: python -m tests.support.revocation_feed_process DATABASE_URL NATS_URL STREAM PREFIX
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from service.crypto.signing import KeyRing
from tests.support.nats import NatsNames
from tests.support.revocations import SECRET_KEY, fast_feed_config
from workers.revocation_feed import RevocationPublisher


async def main(argv: list[str]) -> None:
    database_url, nats_url, stream, prefix = argv[:4]
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    try:
        config = fast_feed_config(NatsNames(stream, prefix), ack_timeout=5.0)
        await RevocationPublisher(pool, nats_url, KeyRing(SECRET_KEY), config).run()
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

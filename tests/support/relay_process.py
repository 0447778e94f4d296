"""Run one Relay in its own process until killed, for the crash tests.

Usage: python -m tests.support.relay_process DATABASE_URL NATS_URL STREAM SUBJECT_PREFIX [WINDOW]
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from workers.relay import Relay, RelayConfig


async def main(argv: list[str]) -> None:
    database_url, nats_url, stream, prefix = argv[:4]
    window = int(argv[4]) if len(argv) > 4 else 256
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    try:
        config = RelayConfig(stream=stream, subject_prefix=prefix, window=window)
        await Relay(pool, nats_url, config).run()
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

"""Start-up check of the role `serve` and `worker` connect as (security issue 12, finding 3).

They should connect as a member of the runtime role (migrations/privileges.sql). One that
owns `events`, or is a superuser, can disable the log's triggers and rewrite history; that is
the single-URL setup of earlier releases, so it still runs, with one warning naming the fix.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import structlog

from events.sql import load_queries
from migrations.roles import RUNTIME_ROLE

Q = load_queries("service.runtime", "database_role.sql")
log = structlog.get_logger("service.runtime.database_role")


async def warn_if_privileged(pool: asyncpg.Pool, *, within: float = 5.0) -> bool:
    """Log `database.role_can_rewrite_history` when the pool's role could; whether it did.

    Postgres not answering yet is no reason to hold start-up (/readyz reports it): the check
    is then skipped, and made again at the next start.
    """
    try:
        facts = await asyncio.wait_for(pool.fetchrow(Q["facts"]), within)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.debug("database.role_not_checked", error=type(exc).__name__)
        return False
    if facts is None or not (facts["superuser"] or facts["owns_log"]):
        return False
    log.warning(
        "database.role_can_rewrite_history",
        role=facts["role"],
        superuser=facts["superuser"],
        events_owner=facts["owner"],
        hint=f"connect AUTHLEDGER_DATABASE_URL as a member of {RUNTIME_ROLE} and give migrate "
        "AUTHLEDGER_OWNER_DATABASE_URL (docs/security.md, The database roles)",
    )
    return True


def url_as(url: str, role: str, password: str | None = None) -> str:
    """`url` logging in as `role` (with `password`, else none) instead of its own user."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = quote(role, safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, parts.fragment))

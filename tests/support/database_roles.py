"""The owner and runtime roles the suite runs as, the way production should (docs/security.md,
"The database roles"): each test database belongs to the owner role, which migrates it; serve,
worker and the `database_url` fixture connect as the runtime role.

Roles belong to the whole Postgres cluster, so they are made once and left in place (several
suites may share a cluster); a password is set for backends that ask for one (containers).
"""

from __future__ import annotations

import contextlib

import asyncpg

from migrations.roles import RUNTIME_ROLE
from service.runtime.database_role import url_as

OWNER_ROLE = "authledger_owner"
PASSWORD = "authledger-test-role"


async def ensure_roles(admin_url: str) -> None:
    """Both roles, able to log in; the owner no superuser (migrate must not need one)."""
    conn = await asyncpg.connect(admin_url)
    try:
        for role in (OWNER_ROLE, RUNTIME_ROLE):
            # made by an earlier run, or by a suite running beside this one
            with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
                await conn.execute(f"CREATE ROLE {role} LOGIN")
            await conn.execute(
                f"ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{PASSWORD}'"
            )
    finally:
        await conn.close()


def as_owner(url: str) -> str:
    return url_as(url, OWNER_ROLE, PASSWORD)


def as_runtime(url: str) -> str:
    return url_as(url, RUNTIME_ROLE, PASSWORD)

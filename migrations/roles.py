"""The owner/runtime split (security issue 12, finding 3): guards.sql and privileges.sql.

`apply_roles` runs both after the numbered migrations (migrations/runner.py) and after a
replay switches the read models (projections/replay.py), as the owner role, in the caller's
transaction or a new one (its one query is in roles.sql). The guards always; the grants when
the runtime role exists, or can be created here (NOLOGIN: its members log in). Without it (an
owner without CREATEROLE that nobody gave the role yet) the grants wait for the next
`migrate`, and the outcome says so, for the caller to warn.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import asyncpg

from events.sql import Conn, load_queries

RUNTIME_ROLE = "authledger_runtime"
_GUARDS = resources.files("migrations").joinpath("guards.sql").read_text(encoding="utf-8")
_PRIVILEGES = resources.files("migrations").joinpath("privileges.sql").read_text(encoding="utf-8")
Q = load_queries("migrations", "roles.sql")


class RoleError(Exception):
    """The connection cannot be the owner: it is (or acts as) the runtime role."""


@dataclass(frozen=True, slots=True)
class RolesOutcome:
    owner: str  # the role that ran them
    created_runtime_role: bool
    granted: bool  # False: the runtime role is missing and this owner may not create it


async def apply_roles(conn: Conn) -> RolesOutcome:
    """Guards and grants, idempotently, in one transaction (a savepoint inside the caller's)."""
    async with conn.transaction():
        facts = await conn.fetchrow(Q["facts"], RUNTIME_ROLE)
        if facts is None:
            raise RoleError("cannot tell which role this connection is")
        owner = str(facts["me"])
        if facts["runtime_member"]:
            raise RoleError(
                f"{owner} is a member of {RUNTIME_ROLE}: migrations must run as the owner "
                "role (AUTHLEDGER_OWNER_DATABASE_URL), never as the runtime"
            )
        await conn.execute(_GUARDS)
        created = False
        if not facts["runtime_exists"]:
            created = await _create_runtime_role(conn)
            if not created:
                return RolesOutcome(owner, created_runtime_role=False, granted=False)
        await conn.execute(_PRIVILEGES)
        return RolesOutcome(owner, created_runtime_role=created, granted=True)


async def _create_runtime_role(conn: Conn) -> bool:
    try:
        async with conn.transaction():
            await conn.execute(f"CREATE ROLE {RUNTIME_ROLE} NOLOGIN")
    except asyncpg.InsufficientPrivilegeError:
        return False
    except asyncpg.DuplicateObjectError:  # another migrate made it meanwhile
        pass
    return True

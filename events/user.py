"""Events of the user aggregate (stream type `user`, id `usr_…`): the people agents act for."""

from __future__ import annotations

from events.catalogue import Event

STREAM_TYPE = "user"


class UserCreated(Event, frozen=True, kw_only=True, tag="user.created"):
    """A person; created by a claim (verified email) or just in time for an agent provider's
    subject (spec §7.5 step 4). `email_index` is absent when the email must not find this
    user (a provider not allowed to link by email brought an address another user has)."""

    user_id: str
    email_sealed: str | None
    email_index: str | None
    email_verified: bool
    phone_sealed: str | None = None
    phone_index: str | None = None
    phone_verified: bool = False
    name_sealed: str | None = None
    created_via: str | None = None  # the issuer, for users provisioned for a provider


class UserErased(Event, frozen=True, kw_only=True, tag="user.erased"):
    """The person's data keys were destroyed (crypto-shredding): the user's own and those of
    the registrations that held their address (`subjects`). Every sealed field of theirs, in
    the log and anywhere else, is unreadable from now on; the events and the chain stay."""

    subjects: tuple[str, ...]
    reason: str | None = None


USER_EVENTS: tuple[type[UserEvent], ...] = (UserCreated, UserErased)
UserEvent = UserCreated | UserErased

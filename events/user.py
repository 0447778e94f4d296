"""Events of the user aggregate (stream type `user`, id `usr_…`): the people agents act for."""

from __future__ import annotations

from events.catalogue import Event

STREAM_TYPE = "user"


class UserCreated(Event, frozen=True, kw_only=True, tag="user.created"):
    user_id: str
    email_sealed: str
    email_index: str
    email_verified: bool


USER_EVENTS: tuple[type[Event], ...] = (UserCreated,)
UserEvent = UserCreated

"""Webhook subscriptions under /admin, behind the admin bearer token (as service/http/admin).

- `POST /admin/subscriptions` registers a receiver: `url`, optional `audience` (default: the
  URL), `secret` (sent as a bearer token, stored sealed, never shown again), `event_types`,
  `reasons`, and `from_position` (default: the log's head, i.e. only what comes next);
- `GET /admin/subscriptions` lists them with their delivery state: the cursor, the event
  being retried, the dead letter, counters and the last answer; `GET …/{id}` shows one;
- `PATCH …/{id}` changes some terms (`"secret": null` removes the secret);
- `DELETE …/{id}[?reason=…]` removes one;
- `POST …/{id}/replay` with `{"from_position": N}` delivers again everything after N, or with
  an empty body (or `{}`) resumes at the cursor, e.g. retries a dead-lettered event.

Bodies are strict JSON; refusals are `{"error", "message"}` with a 4xx, and write nothing.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from msgspec import UNSET, UnsetType

from service.commands.context import Context
from service.commands.subscriptions import (
    BadSubscription,
    Patch,
    create,
    find,
    listed,
    remove,
    replay,
    update,
)
from service.commands.subscriptions import Request as NewSubscription
from service.domain.access import ADMIN as ADMIN_SCOPES
from service.domain.subscriptions import EVENT_TYPES, BadPosition, SubscriptionNotFound
from service.http.access import AccessGate, AdminRefused, operator_caller
from service.http.answers import Subscription, Subscriptions
from service.http.bodies import (
    BODY_LIMIT,
    POSITION_MAX,
    Strict,
    json_reply,
    plain_text,
    read_json,
    read_raw,
    timestamp,
)
from service.http.guarded import admin_documented, guarded_router, settings_of
from service.http.openapi import HTTPS_URL, json_body, link_parameters, ok, refined
from service.outbound.policy import OutboundPolicy, policy_of
from service.settings import Settings

AnyRequest = Request[Any, Any, Any]
PATH = "/admin/subscriptions"
ONE = PATH + "/{subscription_id:str}"
_ID = re.compile(r"sub_[A-Za-z0-9_-]{1,64}")
Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2048)]
Audience = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Types = Annotated[list[Code], msgspec.Meta(min_length=1, max_length=8)]
Reasons = Annotated[list[Code], msgspec.Meta(max_length=16)]
Position = Annotated[int, msgspec.Meta(ge=0, le=POSITION_MAX)]


class CreateBody(Strict, frozen=True):
    url: Url
    audience: Audience | None = None
    secret: Secret | None = None
    event_types: Types | None = None
    reasons: Reasons = []  # noqa: RUF012
    from_position: Position | None = None


class PatchBody(Strict, frozen=True):
    url: Url | UnsetType = UNSET
    audience: Audience | UnsetType = UNSET
    secret: Secret | UnsetType | None = UNSET
    event_types: Types | UnsetType = UNSET
    reasons: Reasons | UnsetType = UNSET


class ReplayBody(Strict, frozen=True):
    from_position: Position | None = None


_FOUND = ok(
    Subscription,
    "The subscription",
    show=link_parameters("showSubscription", subscription_id="subscription_id"),
    change=link_parameters("changeSubscription", subscription_id="subscription_id"),
    replay=link_parameters("replaySubscription", subscription_id="subscription_id"),
    remove=link_parameters("removeSubscription", subscription_id="subscription_id"),
)
CREATE_DOC = admin_documented(
    body=json_body(refined(CreateBody, url=HTTPS_URL)),
    answers={201: _FOUND},
    refusals=(400, 401, 413),
)
LIST_DOC = admin_documented(answers={200: ok(Subscriptions)}, refusals=(401,))
SHOW_DOC = admin_documented(
    answers={200: _FOUND}, refusals=(401, 404), operation_id="showSubscription"
)
PATCH_DOC = admin_documented(
    body=json_body(refined(PatchBody, url=HTTPS_URL)),
    answers={200: _FOUND},
    refusals=(400, 401, 404, 413),
    operation_id="changeSubscription",
)
REMOVE_DOC = admin_documented(
    answers={200: ok(Subscription, "Removed")},
    refusals=(400, 401, 404),
    operation_id="removeSubscription",
)
REPLAY_DOC = admin_documented(
    body=json_body(ReplayBody),
    body_required=False,
    answers={200: _FOUND},
    refusals=(400, 401, 404, 413),
    operation_id="replaySubscription",
)


def _loopback_ok(request: AnyRequest) -> bool:
    return settings_of(request).jwks_allow_loopback_http


def _outbound(request: AnyRequest) -> OutboundPolicy:
    return policy_of(settings_of(request).outbound_allow)


def _checked_id(subscription_id: str) -> str:
    if not _ID.fullmatch(subscription_id):
        raise AdminRefused(404, "not_found", "no such subscription")
    return subscription_id


@post(PATH, summary="Register a webhook receiver of revocations (SETs, RFC 8935 push)",
      request_max_body_size=BODY_LIMIT, operation_class=CREATE_DOC)  # fmt: skip
async def add_subscription(request: AnyRequest, ctx: NamedDependency[Context]) -> Response[bytes]:
    body = await read_json(request, CreateBody)
    wanted = NewSubscription(
        url=body.url,
        audience=body.audience,
        secret=body.secret,
        event_types=tuple(body.event_types) if body.event_types is not None else EVENT_TYPES,
        reasons=tuple(body.reasons),
    )
    try:
        row = await create(
            ctx, wanted, operator_caller(request), from_position=body.from_position,
            allow_loopback_http=_loopback_ok(request), outbound=_outbound(request),
        )  # fmt: skip
    except (BadSubscription, BadPosition) as exc:
        raise AdminRefused(400, "invalid_request", str(exc)) from None
    return json_reply(as_json(row), 201)


@get(PATH, summary="Webhook subscriptions and where their deliveries stand",
     operation_class=LIST_DOC)  # fmt: skip
async def list_subscriptions(ctx: NamedDependency[Context]) -> Response[bytes]:
    return json_reply({"subscriptions": [as_json(row) for row in await listed(ctx)]})


@get(ONE, summary="One webhook subscription", operation_class=SHOW_DOC)
async def show_subscription(
    ctx: NamedDependency[Context], subscription_id: FromPath[str]
) -> Response[bytes]:
    row = await find(ctx, _checked_id(subscription_id))
    if row is None:
        raise AdminRefused(404, "not_found", "no such subscription")
    return json_reply(as_json(row))


@patch(ONE, summary="Change a webhook subscription's terms", request_max_body_size=BODY_LIMIT,
       operation_class=PATCH_DOC)  # fmt: skip
async def change_subscription(
    request: AnyRequest, ctx: NamedDependency[Context], subscription_id: FromPath[str]
) -> Response[bytes]:
    sid = _checked_id(subscription_id)
    body = await read_json(request, PatchBody)
    changes = Patch(
        url=body.url,
        audience=body.audience,
        secret=body.secret,
        event_types=UNSET if isinstance(body.event_types, UnsetType) else tuple(body.event_types),
        reasons=UNSET if isinstance(body.reasons, UnsetType) else tuple(body.reasons),
    )
    try:
        row = await update(
            ctx, sid, changes, operator_caller(request),
            allow_loopback_http=_loopback_ok(request), outbound=_outbound(request),
        )  # fmt: skip
    except BadSubscription as exc:
        raise AdminRefused(400, "invalid_request", str(exc)) from None
    except SubscriptionNotFound:
        raise AdminRefused(404, "not_found", "no such subscription") from None
    return json_reply(as_json(row))


@delete(ONE, status_code=200, summary="Remove a webhook subscription",
        operation_class=REMOVE_DOC)  # fmt: skip
async def remove_subscription(
    request: AnyRequest,
    ctx: NamedDependency[Context],
    subscription_id: FromPath[str],
    reason: FromQuery[str | None] = None,
) -> Response[bytes]:
    sid = _checked_id(subscription_id)
    if reason is not None and not 0 < len(reason) <= 500:
        raise AdminRefused(400, "invalid_request", "reason: 1 to 500 characters")
    plain_text(reason or "", "reason")
    try:
        row = await remove(ctx, sid, operator_caller(request), reason)
    except SubscriptionNotFound:
        raise AdminRefused(404, "not_found", "no such subscription") from None
    return json_reply(as_json(row))


@post(ONE + "/replay", status_code=200, summary="Deliver again from a log position, or resume",
      request_max_body_size=BODY_LIMIT, operation_class=REPLAY_DOC)  # fmt: skip
async def replay_subscription(
    request: AnyRequest, ctx: NamedDependency[Context], subscription_id: FromPath[str]
) -> Response[bytes]:
    sid = _checked_id(subscription_id)
    empty = not (await read_raw(request)).strip()
    body = ReplayBody() if empty else await read_json(request, ReplayBody)
    try:
        row = await replay(ctx, sid, operator_caller(request), body.from_position)
    except BadPosition as exc:
        raise AdminRefused(400, "invalid_request", str(exc)) from None
    except SubscriptionNotFound:
        raise AdminRefused(404, "not_found", "no such subscription") from None
    return json_reply(as_json(row))


def as_json(row: Any) -> dict[str, Any]:
    """A subscription as the admin API shows it: never the secret, only whether there is one."""
    status = row["status"]
    retrying = None
    if status == "active" and row["head_position"] is not None:
        retrying = {
            "position": row["head_position"],
            "attempts": row["attempts"],
            "since": _when(row["head_since"]),
            "next_attempt_at": _when(row["next_attempt_at"]),
        }
    dead_letter = None
    if status == "dead_letter":
        dead_letter = {
            "position": row["head_position"],
            "attempts": row["attempts"],
            "cause": row["dead_letter_cause"],
            "error": row["last_error"],
            "at": _when(row["dead_lettered_at"]),
        }
    return {
        "subscription_id": row["subscription_id"],
        "url": row["url"],
        "audience": row["audience"],
        "has_secret": row["secret_sealed"] is not None,
        "event_types": list(row["event_types"]),
        "reasons": list(row["reasons"]),
        "status": status,
        "cursor": row["cursor_position"],
        "next_position": row["next_position"],
        "retrying": retrying,
        "dead_letter": dead_letter,
        "delivered": row["delivered"],
        "failed_attempts": row["failed_attempts"],
        "last_delivered_at": _when(row["last_delivered_at"]),
        "last_attempt_at": _when(row["last_attempt_at"]),
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "created_at": _when(row["created_at"]),
        "updated_at": _when(row["updated_at"]),
        "version": row["version"],
    }


def _when(instant: datetime | None) -> str | None:
    return None if instant is None else timestamp(instant)


def subscriptions_router(settings: Settings, gate: AccessGate) -> Router:
    handlers = [
        add_subscription,
        list_subscriptions,
        show_subscription,
        change_subscription,
        remove_subscription,
        replay_subscription,
    ]
    return guarded_router(handlers, gate, ADMIN_SCOPES, tag="admin", settings=settings)

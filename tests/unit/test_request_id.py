"""service.http.app.request_id_middleware: one X-Request-ID on every answer, the id bound in
structlog's contextvars for the request only."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import structlog

from service.http.app import request_id_middleware


async def _answering(scope: Any, receive: Any, send: Any) -> None:
    """An app that puts its own X-Request-ID (upper-case, as a careless handler might) and
    reports the request id it sees bound."""
    seen = structlog.contextvars.get_contextvars().get("request_id", "")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"X-Request-ID", b"the-app-s"), (b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": seen.encode()})


def _call(offered: bytes | None) -> list[dict[str, Any]]:
    headers = [(b"x-request-id", offered)] if offered is not None else []
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": headers}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        structlog.contextvars.bind_contextvars(request_id="outer")
        await request_id_middleware(_answering)(scope, receive, send)  # type: ignore[arg-type]
        # the request's id was bound for it alone: what was bound before is back
        assert structlog.contextvars.get_contextvars()["request_id"] == "outer"

    asyncio.run(run())
    return sent


def test_the_offered_id_replaces_the_apps_and_is_bound_while_handling() -> None:
    start, body = _call(b"req-7")
    ids = [v for k, v in start["headers"] if k.lower() == b"x-request-id"]
    assert ids == [b"req-7"]
    assert (b"content-type", b"text/plain") in start["headers"]
    assert body["body"] == b"req-7"


def test_an_insane_or_missing_id_is_made_from_the_csprng() -> None:
    made = set()
    for offered in (b"bad id!", None, b"x" * 65):
        start, body = _call(offered)
        ids = [v for k, v in start["headers"] if k.lower() == b"x-request-id"]
        assert len(ids) == 1
        assert re.fullmatch(rb"[0-9a-f]{32}", ids[0])
        assert body["body"] == ids[0]
        made.add(ids[0])
    assert len(made) == 3

"""One push (RFC 8935): POST a SET to a subscriber and read what its answer means.

The request is `POST <url>` with `Content-Type: application/secevent+jwt`, `Accept:
application/json`, the SET as the body, and `Authorization: Bearer <secret>` when the
subscriber set one. Redirects are not followed (the SET and the secret go to the URL the
operator registered, nowhere else); one deadline covers connect, request and answer; at most
`MAX_ANSWER_BYTES` of the answer are read.

What an answer means (`classify`):
- any 2xx: delivered. RFC 8935 says 202; a 200 or 204 means the same to HTTP, and refusing
  it would only send the receiver a SET it already took.
- 400 (RFC 8935 §2.3: the receiver rejected the SET, with `{"err": …}`), 401/403 (our
  credentials refused), 3xx (a redirect we will not follow), 410, 413, 415: permanent. Sending
  the same SET again cannot succeed until someone changes the receiver or the subscription,
  so the subscription is dead-lettered at once, to be replayed after the fix; skipping the
  event instead would silently lose a revocation.
- anything else (408, 429, 5xx, other 4xx), a timeout, a refused or broken connection:
  retried with back-off. `Retry-After` (delay in seconds) is honoured as a floor.

Where a push may go (security finding 7): `webhook_client` connects only to public
addresses, or to those AUTHLEDGER_OUTBOUND_ALLOW admits, checked on the resolved address
when connecting (service.outbound.transport); redirects are not followed. A refused
connection sends nothing and is a failed try (`address refused: <reason>`), retried with
back-off like a receiver that is down, then dead-lettered: a subscription whose host later
resolves to a public address again resumes, and none is hammered meanwhile.

The error text recorded in the log and the logs is short and never holds the SET, the
secret or the receiver's free-text description; only its `err` code, when it is a plain
token, is kept.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx

from service.domain.subscriptions import Outcome
from service.outbound.policy import policy_from
from service.outbound.transport import Guard, guarded_client, refused_by

SET_MEDIA_TYPE = "application/secevent+jwt"
MAX_ANSWER_BYTES = 4096
PERMANENT = frozenset({400, 401, 403, 410, 413, 415})
_ERR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def webhook_client(allow: tuple[str, ...] = ()) -> httpx.AsyncClient:
    """The push worker's HTTP client: public addresses, plus what `allow` (the entries of
    AUTHLEDGER_OUTBOUND_ALLOW) admits."""
    return guarded_client(Guard(policy_from(allow), "webhook"))


def classify(status: int, body: bytes, retry_after: str | None, duration_ms: int = 0) -> Outcome:
    """The meaning of an HTTP answer (see the module docstring)."""
    if 200 <= status < 300:
        return Outcome(status, None, duration_ms=duration_ms)
    error = f"http {status}"
    code = _err_code(body)
    if code is not None:
        error += f" {code}"
    if 300 <= status < 400:
        return Outcome(status, f"{error} (redirects are not followed)", True, None, duration_ms)
    if status in PERMANENT:
        return Outcome(status, error, True, None, duration_ms)
    return Outcome(status, error, False, _seconds(retry_after), duration_ms)


async def post_set(
    client: httpx.AsyncClient, url: str, token: str, *, secret: str | None, deadline: float
) -> Outcome:
    """POST `token` to `url`; never raises for what the network or the receiver does."""
    headers = {"Content-Type": SET_MEDIA_TYPE, "Accept": "application/json"}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    started = time.perf_counter()
    try:
        async with asyncio.timeout(deadline):
            request = client.build_request("POST", url, content=token.encode(), headers=headers)
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                body = await _read_capped(response)
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(None, "timeout", duration_ms=_since(started))
    except httpx.ConnectError as exc:
        refused = refused_by(exc)
        error = "connection failed" if refused is None else f"address refused: {refused.reason}"
        return Outcome(None, error, duration_ms=_since(started))
    except httpx.HTTPError as exc:
        return Outcome(None, f"transport error {type(exc).__name__}", duration_ms=_since(started))
    return classify(
        response.status_code, body, response.headers.get("retry-after"), _since(started)
    )


async def _read_capped(response: httpx.Response) -> bytes:
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_ANSWER_BYTES:
            return body[:MAX_ANSWER_BYTES]
    return body


def _err_code(body: bytes) -> str | None:
    """RFC 8935 §2.3's `err`, when the body is a JSON object holding a plain token there."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    code = parsed.get("err") if isinstance(parsed, dict) else None
    return code if isinstance(code, str) and _ERR_CODE.fullmatch(code) else None


def _seconds(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None  # the HTTP-date form is not honoured; back-off applies
    return float(int(value.strip()))


def _since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)

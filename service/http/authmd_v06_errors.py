"""The auth.md's A6, the errors of the 0.6.0 dialect (docs/protocol.md §12.9), for the
tenant's profile: the main profile's (the claim grant's polling codes, V2's
`claimed_or_in_flight`) or the AuthKit profile's (complete's codes, `already_claimed`,
`invalid_refresh_token`, and no claim grant). service/http/authmd_v06.py places it."""

from __future__ import annotations

from typing import Literal

from service.http.markdown import codes
from service.tenancy.config import TenantConfig

Profile = Literal["main", "authkit"]
BOTH: tuple[Profile, ...] = ("main", "authkit")
MAIN: tuple[Profile, ...] = ("main",)
AUTHKIT: tuple[Profile, ...] = ("authkit",)
# code, status, where, what to do, the profiles that send it
ERROR_ROWS: tuple[tuple[str, int, str, str, tuple[Profile, ...]], ...] = (
    ("invalid_request", 400, "all", "malformed body or form; fix it first", BOTH),
    ("invalid_login_hint", 400, "register", "the hint is no e-mail address; ask the user again",
     BOTH),
    ("anonymous_not_enabled", 400, "register", "that type is off; pick another (A1)", BOTH),
    ("service_auth_not_enabled", 400, "register", "that type is off; pick another (A1)", BOTH),
    ("identity_assertion_not_enabled", 400, "register", "that type is off; pick another (A1)",
     BOTH),
    ("interaction_required", 401, "register (ID-JAG)",
     "the person must claim first: A4 step 2 with the answer's `claim`", BOTH),
    ("login_required", 401, "register (ID-JAG)",
     "sign the user in again at the provider (`max_age` s), mint a new ID-JAG", BOTH),
    ("invalid_refresh_token", 400, "register (refresh)",
     "not a live refresh token, or one used twice (which ended them all): register again",
     AUTHKIT),
    ("invalid_claim_token", 401, "claim", "unknown, or made at the other door; register again",
     BOTH),
    ("claimed_or_in_flight", 409, "claim", "already claimed; nothing to do", MAIN),
    ("already_claimed", 409, "claim, complete", "already claimed; nothing to do", AUTHKIT),
    ("claim_expired", 410, "claim", "the registration ended; register again", MAIN),
    ("claim_expired", 410, "claim, complete", "the registration ended; register again", AUTHKIT),
    ("invalid_claim", 400, "complete", "unknown claim token, or made at the other door; "
     "register again", AUTHKIT),
    ("claim_not_confirmed", 409, "complete",
     "the person has not pressed Authorize on the current attempt yet: A4 step 2", AUTHKIT),
    ("invalid_user_code", 401, "complete", "wrong code: ask the person to read it again",
     AUTHKIT),
    ("user_code_expired", 410, "complete", "the code ran out: the person presses Authorize again",
     AUTHKIT),
    ("unsupported_grant_type", 400, "token", "send one of `grant_types_supported`", BOTH),
    ("invalid_grant", 400, "token", "the assertion is not (or no longer) good: A3", BOTH),
    ("authorization_pending", 400, "token (claim grant)", "A4 step 3", MAIN),
    ("slow_down", 400, "token (claim grant)", "A4 step 3", MAIN),
    ("access_denied", 400, "token (claim grant)", "A4 step 3", MAIN),
    ("expired_token", 400, "token (claim grant)", "A4 step 3", MAIN),
    ("rate_limited", 429, "all", "wait `Retry-After` seconds, retry", BOTH),
    ("not_found", 404, "all", "this door is shut here; use the other one", BOTH),
    ("unauthorized", 401, "API", "the token is gone: exchange the assertion again (A3)", BOTH),
    ("internal_error", 500, "all", "back off (1 s, 2 s, 4 s …), repeat the same request", BOTH),
)  # fmt: skip
ID_JAG_CODES = ("invalid_issuer", "invalid_signature", "expired", "invalid_audience",
                "replay_detected", "missing_verified_email", "invalid_client_id")  # fmt: skip
ERRORS = """### A6. Errors of this dialect

Three shapes, by endpoint: `identity_endpoint` and `claim_endpoint`{complete}
answer `{"error", "message", "error_description"}` (the two texts are the same); the token and
revocation endpoints answer RFC 6749's `{"error", "error_description"}`, every answer
`Cache-Control: no-store`; `events_endpoint` (providers only) answers `{"err", "description"}`.
Act on the code. An ID-JAG refused at registration gets the codes v1 uses for it
({id_jag}): mint a fresh ID-JAG; `invalid_issuer` means the operator does not trust your
provider.

| error | HTTP | where | what to do |
|---|---|---|---|
{rows}"""


def rows_of(profile: Profile) -> tuple[tuple[str, int, str, str], ...]:
    """The table's rows for one profile: each code once."""
    return tuple((c, s, where, todo) for c, s, where, todo, sent in ERROR_ROWS if profile in sent)


def render_errors(t: TenantConfig) -> str:
    """A6 for the tenant's profile."""
    rows = "\n".join(
        f"| `{c}` | {status} | {where} | {todo} |"
        for c, status, where, todo in rows_of(t.v06_profile)
    )
    complete = " (and its `/complete`)" if t.v06_profile == "authkit" else ""
    return (
        ERRORS.replace("{complete}", complete)
        .replace("{id_jag}", codes(ID_JAG_CODES))
        .replace("{rows}", rows)
    )

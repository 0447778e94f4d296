"""The generated auth.md for the v0.6 door (service/http/authmd_v06.py): present only while the
door is open, alone after Step 1 when the v1 door is shut, its examples shaped exactly as the
service answers, every code of the dialect's families with its status, the real URLs and
lifetimes."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from service.domain.errors import STATUS
from service.http.answers import (
    AnonymousIdentity,
    AssertedIdentity,
    ClaimAttemptOpened,
    ClaimGrantIssued,
    ServiceAuthIdentity,
    TokenIssued,
    UserCodeHandout,
)
from service.http.authkit_answers import (
    AnonymousNested,
    AssertedNested,
    AttemptOpenedNested,
    ClaimCompleted,
    ClaimHandles,
    CompletedIdentity,
    Refreshed,
    ServiceAuthNested,
)
from service.http.authmd import render_auth_md
from service.http.authmd_v06 import HEADING
from service.settings import Settings
from service.tenancy.config import TenantConfig

PARTS = ["### A1.", "### A2.", "### A3.", "### A4.", "### A5.", "### A6.", "### A7."]
ANSWERS = (AnonymousIdentity, ServiceAuthIdentity, AssertedIdentity, ClaimAttemptOpened,
           TokenIssued, ClaimGrantIssued)  # fmt: skip


def tenant(**changes: Any) -> TenantConfig:
    settings = Settings(database_url="", nats_url="", public_url="https://auth.example.com")
    base = TenantConfig.from_settings(settings)
    return msgspec.structs.replace(base, **{"doors": ("v1", "v06"), **changes})


def v06_part(document: str) -> str:
    return document[document.index(HEADING) :]


def json_blocks(text: str) -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, re.S)]


def test_v1_only_has_no_v06_part() -> None:
    """A tenant with the v1 door only renders the v1 walkthrough and nothing of the other."""
    document = render_auth_md(tenant(doors=("v1",)))
    assert HEADING not in document
    assert "/agent/identity" not in document
    assert "service_auth" not in document
    assert "two dialects" not in document


def test_both_doors_both_walkthroughs_in_order() -> None:
    """Both doors: the preamble says there are two dialects and where each is; the v1 steps,
    then the v0.6 part with A1 to A7 in order; 1b shows the merged metadata."""
    t = tenant()
    document = render_auth_md(t)
    assert "two dialects" in document
    for heading in ("## Step 2", "## Step 5", "## Errors", "## Revocation", HEADING):
        assert heading in document
    assert document.index("## Revocation") < document.index(HEADING)
    part = v06_part(document)
    positions = [part.index(p) for p in PARTS]
    assert positions == sorted(positions)
    assert json_blocks(document)[1] == t.authorization_server_metadata()
    for url in (t.identity_endpoint, t.claim_endpoint, t.token_endpoint,
                t.revocation_endpoint, t.jwks_uri, t.events_endpoint):  # fmt: skip
        assert url in part


def test_v06_only_skips_the_v1_steps() -> None:
    """With the v1 door shut, Step 1 leads straight to the v0.6 part: no v1 step, route,
    error table or method."""
    t = tenant(doors=("v06",))
    document = render_auth_md(t)
    assert "Then follow the part" not in document  # the sentence is the one below
    assert "then follow the part *The 0.6.0 dialect*" in document
    for absent in ("## Step 2", "## Step 4", "## Errors", t.register_uri, "verified email"):
        assert absent not in document, absent
    assert document.index("### 1b.") < document.index(HEADING)


def test_examples_have_the_answers_fields() -> None:
    """Each answer example has exactly the fields, in order, of the struct the service
    answers with (service/http/answers.py), and the ceremony block those of its handout."""
    blocks = [b for b in json_blocks(v06_part(render_auth_md(tenant()))) if len(b) > 1]
    shapes = [list(b) for b in blocks]
    for answer in ANSWERS:
        assert list(answer.__struct_fields__) in shapes, answer.__name__
    handouts = [b.get("claim") or b.get("claim_attempt") for b in blocks]
    ceremonies = [h for h in handouts if h]
    assert ceremonies
    assert all(list(c) == list(UserCodeHandout.__struct_fields__) for c in ceremonies)


def table_codes(profile: str) -> set[str]:
    """A6's codes for a profile; each listed once, with the status the service answers it."""
    part = v06_part(render_auth_md(tenant(v06_profile=profile)))
    table = part[part.index("### A6.") : part.index("### A7.")]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", table, re.M)
    assert len(rows) == len({code for code, _ in rows}), profile
    statuses = {str(code): status for code, status in STATUS.items()}
    statuses["internal_error"] = 500  # the one code no ProtocolError carries
    for code, status in rows:
        assert statuses[code] == int(status), code
    return {code for code, _ in rows}


POLLING = {"authorization_pending", "slow_down", "access_denied", "expired_token"}
COMPLETE = {"invalid_claim", "claim_not_confirmed", "invalid_user_code", "user_code_expired",
            "already_claimed"}  # fmt: skip


def test_every_code_with_its_status() -> None:
    """The main profile's table lists each code once, with the status the service answers
    it: the claim grant's polling codes, none of the AuthKit profile's own."""
    codes = table_codes("main")
    assert {"invalid_grant", "interaction_required", "login_required",
            "invalid_login_hint", "claimed_or_in_flight"} | POLLING <= codes  # fmt: skip
    assert not codes & (COMPLETE | {"invalid_refresh_token"})


def test_authkit_table_has_its_own_codes() -> None:
    """An AuthKit tenant's table: complete's codes, `already_claimed` for V2's 409 and
    `invalid_refresh_token`, each with its status; no claim grant, so no polling code; the
    complete route answers in the identity family's shape."""
    codes = table_codes("authkit")
    assert COMPLETE | {"invalid_refresh_token", "claim_expired", "invalid_grant"} <= codes
    assert not codes & (POLLING | {"claimed_or_in_flight"})
    part = v06_part(render_auth_md(tenant(v06_profile="authkit")))
    assert "`claim_endpoint` (and its `/complete`)" in part


def test_authkit_examples_have_the_answers_fields() -> None:
    """An AuthKit tenant's A2 and A4 examples have exactly the fields, in order, of the
    nested answers (service/http/authkit_answers.py), down to `claim` and `identity`; A3
    and A5 speak of refresh tokens, not of their absence."""
    part = v06_part(render_auth_md(tenant(v06_profile="authkit")))
    blocks = [b for b in json_blocks(part) if len(b) > 1]
    shapes = [list(b) for b in blocks]
    for answer in (AnonymousNested, ServiceAuthNested, AssertedNested, AttemptOpenedNested,
                   ClaimCompleted, Refreshed):  # fmt: skip
        assert list(answer.__struct_fields__) in shapes, answer.__name__
    claims = [b["claim"] for b in blocks if isinstance(b.get("claim"), dict)]
    assert claims
    assert all(list(c) in (list(ClaimHandles.__struct_fields__),
                           list(ClaimHandles.__struct_fields__)[:-1]) for c in claims)  # fmt: skip
    held = [
        b["identity"] for b in blocks if b.get("status") == "claimed" or b.get("type") == "refresh"
    ]
    assert [list(i) for i in held] == [list(CompletedIdentity.__struct_fields__)] * 2
    assert "there is no refresh token" not in part
    assert "`token=<refresh_token>`" in part
    assert "user_code" not in json.dumps(blocks)  # the agent never gets the code


def test_real_lifetimes_and_pacing() -> None:
    """The configured assertion lifetime, poll interval, code lifetime and delivery
    allowance appear, not placeholders."""
    t = tenant(assertion_ttl=1800, claim_poll_interval=7, otp_ttl=300, claim_deliveries=2,
               claim_delivery_window=120)  # fmt: skip
    part = v06_part(render_auth_md(t))
    assert "(`assertion_expires`, 1800 s)" in part
    assert "every `interval` seconds (7)" in part
    assert "The code lives 300 s" in part
    assert "at most\n2 times within 120 s" in part
    assert '"interval": 7' in part


def test_flows_switched_off_are_not_offered() -> None:
    """Without service_auth and ID-JAG: only anonymous in A1 and A2."""
    part = v06_part(render_auth_md(tenant(flows=("anonymous", "verified_email"))))
    pick = part[part.index("### A1.") : part.index("### A2.")]
    assert re.findall(r"^(\d)\. ", pick, re.M) == ["1"]
    assert "#### service_auth" not in part
    assert "#### identity_assertion" not in part
    assert "Security Event Token" not in part

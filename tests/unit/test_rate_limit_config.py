"""AUTHLEDGER_RATE_LIMITS: `on`, `off`, or a TOML file of limits per tenant (spec §10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.ratelimit.limiter import client_network
from service.ratelimit.limits import (
    LIMIT_NAMES,
    SPEC_LIMITS,
    LimitsError,
    Rate,
    load_limits,
    parse_limits,
    parse_rate,
)
from service.settings import ConfigError


@pytest.mark.parametrize(
    ("raw", "rate"),
    [
        ("5/h", Rate(5, 3_600)),
        ("300/min", Rate(300, 60)),
        (" 10 / 15 minutes ", Rate(10, 900)),
        ("1/second", Rate(1, 1)),
        ("1000/d", Rate(1_000, 86_400)),
        ("7/2H", Rate(7, 7_200)),
        ("off", None),
        ("OFF", None),
    ],
)
def test_rates_read_as_count_per_period(raw: str, rate: Rate | None) -> None:
    """A rate is `<count>/<period>` with a unit, optionally multiplied; `off` disables."""
    assert parse_rate(raw) == rate


@pytest.mark.parametrize(
    "raw", ["5", "5/fortnight", "0/h", "-1/h", "5/0h", "5/8d", "five/h", "5 per hour", "", 5]
)
def test_bad_rates_are_refused(raw: object) -> None:
    """No unit, an unknown unit, a zero count or period, a period over 7 days, not a string."""
    with pytest.raises(LimitsError):
        parse_rate(raw)


def test_on_means_the_spec_numbers_and_off_means_none() -> None:
    """`on`: spec §10's numbers for every tenant; `off`: no limiter at all."""
    limits = load_limits("on")
    assert limits is not None
    assert dict(limits.of("default")) == dict(SPEC_LIMITS)
    assert dict(limits.of("acme")) == dict(SPEC_LIMITS)
    assert SPEC_LIMITS["anonymous_per_ip"] == Rate(5, 3_600)
    assert SPEC_LIMITS["verified_email_per_tenant"] == Rate(1_000, 3_600)
    assert SPEC_LIMITS["id_jag_per_tenant"] == Rate(1_000, 3_600)
    assert SPEC_LIMITS["mail_per_recipient"] == Rate(5, 3_600)
    assert SPEC_LIMITS["revoke_per_issuer"] == Rate(300, 60)
    assert load_limits("off") is None


def test_a_file_overrides_some_limits_and_tenants_lay_over_default() -> None:
    """Missing keys keep the spec's numbers; a tenant table starts from [default]."""
    limits = parse_limits(
        """
        [default]
        anonymous_per_ip = "10/h"
        claim_per_email = "off"

        [tenants.acme]
        anonymous_per_ip = "off"
        revoke_per_issuer = "600/min"
        """
    )
    default, acme = limits.of("default"), limits.of("acme")
    assert default["anonymous_per_ip"] == Rate(10, 3_600)
    assert default["claim_per_email"] is None
    assert default["anonymous_per_tenant"] == SPEC_LIMITS["anonymous_per_tenant"]
    assert acme["anonymous_per_ip"] is None
    assert acme["claim_per_email"] is None  # from [default]
    assert acme["revoke_per_issuer"] == Rate(300 * 2, 60)
    assert limits.of("other") == default
    assert set(acme) == set(LIMIT_NAMES)


def test_the_shared_identity_tenant_name_sets_both_flows_own_budgets() -> None:
    """`identity_per_tenant` (one budget for both flows until 2026-12-06) still reads, as each
    flow's own budget; a flow's own name in the same table wins, whatever the order."""
    limits = parse_limits(
        """
        [default]
        id_jag_per_tenant = "50/h"
        identity_per_tenant = "200/h"

        [tenants.acme]
        identity_per_tenant = "off"
        """
    )
    default, acme = limits.of("default"), limits.of("acme")
    assert (default["verified_email_per_tenant"], default["id_jag_per_tenant"]) == (
        Rate(200, 3_600),
        Rate(50, 3_600),
    )
    assert (acme["verified_email_per_tenant"], acme["id_jag_per_tenant"]) == (None, None)
    assert "identity_per_tenant" not in default


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[default]\nanonymous_per_ip = "5 per hour"', "[default] anonymous_per_ip"),
        ('[default]\nanonymus_per_ip = "5/h"', "[default] anonymus_per_ip: unknown limit"),
        ("[tenants.acme]\nclaim_per_email = 3", "[tenants.acme] claim_per_email"),
        ('register = "10/minute"', "'register'"),
        ('tenants = "acme"', "tenants must be tables"),
        ("[default\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_variable_and_the_key(
    tmp_path: Path, text: str, named: str
) -> None:
    """The ConfigError starts with the variable, names the file and the table and key."""
    path = tmp_path / "limits.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_limits(str(path))
    message = str(refused.value)
    assert message.startswith(f"AUTHLEDGER_RATE_LIMITS: {path}: ")
    assert named in message
    assert "\n" not in message


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A path that vanished (or is a folder) since the settings were read."""
    with pytest.raises(ConfigError, match=r"^AUTHLEDGER_RATE_LIMITS: cannot read "):
        load_limits(str(tmp_path))


@pytest.mark.parametrize(
    ("host", "counted"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("testclient", None),
        ("", None),
        (None, None),
    ],
)
def test_the_ip_tier_counts_ipv4_hosts_and_ipv6_prefixes(
    host: str | None, counted: str | None
) -> None:
    """An IPv6 client counts by its /64; an unknown address skips the IP tier (§10)."""
    assert client_network(host) == counted

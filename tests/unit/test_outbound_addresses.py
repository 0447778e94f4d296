"""Which addresses outbound requests may reach (security finding 7): the classification of
service.outbound.addresses at the edge of every range, its IPv6 spellings of IPv4 addresses,
the allow-list (AUTHLEDGER_OUTBOUND_ALLOW) and the registration-time check of a URL's host."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv6Address
from typing import Literal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.outbound.addresses import embedded_ipv4, refusal
from service.outbound.policy import LOOPBACK, parse_allow, policy_of
from service.settings import ConfigError, Settings

FAST = settings(max_examples=300, deadline=None)

# (address, reason or None): the first and last address of each refused range, and the
# neighbours just outside it.
EDGES = [
    ("0.0.0.0", "unspecified"),  # noqa: S104 -- an address under test, not a binding
    ("0.255.255.255", "unspecified"), ("1.0.0.0", None),
    ("9.255.255.255", None), ("10.0.0.0", "private"), ("10.255.255.255", "private"),
    ("11.0.0.0", None),
    ("100.63.255.255", None), ("100.64.0.0", "cgnat"), ("100.127.255.255", "cgnat"),
    ("100.128.0.0", None), ("100.100.100.200", "metadata"),
    ("126.255.255.255", None), ("127.0.0.0", "loopback"), ("127.0.0.1", "loopback"),
    ("127.255.255.255", "loopback"), ("128.0.0.0", None),
    ("168.63.129.15", None), ("168.63.129.16", "metadata"), ("168.63.129.17", None),
    ("169.253.255.255", None), ("169.254.0.0", "link-local"), ("169.254.169.253", "link-local"),
    ("169.254.169.254", "metadata"), ("169.254.169.255", "link-local"),
    ("169.254.170.2", "metadata"), ("169.254.255.255", "link-local"), ("169.255.0.0", None),
    ("172.15.255.255", None), ("172.16.0.0", "private"), ("172.31.255.255", "private"),
    ("172.32.0.0", None),
    ("191.255.255.255", None), ("192.0.0.0", "reserved"), ("192.0.0.255", "reserved"),
    ("192.0.1.0", None), ("192.0.2.0", "reserved"), ("192.0.2.255", "reserved"),
    ("192.0.3.0", None), ("192.88.98.255", None), ("192.88.99.0", "reserved"),
    ("192.88.99.255", "reserved"), ("192.88.100.0", None),
    ("192.167.255.255", None), ("192.168.0.0", "private"), ("192.168.255.255", "private"),
    ("192.169.0.0", None),
    ("198.17.255.255", None), ("198.18.0.0", "reserved"), ("198.19.255.255", "reserved"),
    ("198.20.0.0", None), ("198.51.99.255", None), ("198.51.100.0", "reserved"),
    ("198.51.100.255", "reserved"), ("198.51.101.0", None), ("203.0.112.255", None),
    ("203.0.113.0", "reserved"), ("203.0.113.255", "reserved"), ("203.0.114.0", None),
    ("223.255.255.255", None), ("224.0.0.0", "multicast"), ("239.255.255.255", "multicast"),
    ("240.0.0.0", "reserved"), ("255.255.255.255", "reserved"),
    ("8.8.8.8", None), ("1.1.1.1", None),
    ("::", "unspecified"), ("::1", "loopback"), ("::2", "reserved"),
    ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"), ("2000::", None),
    ("2001::", "reserved"), ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"),
    ("2001:200::", None), ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("2001:db8::", "reserved"), ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"),
    ("2001:db9::", None), ("2606:4700:4700::1111", None),
    ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None), ("3fff::", "reserved"),
    ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"), ("3fff:1000::", None),
    ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None), ("4000::", "reserved"),
    ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"), ("fc00::", "private"),
    ("fd00:ec2::253", "private"), ("fd00:ec2::254", "metadata"), ("fd00:ec2::255", "private"),
    ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "private"),
    ("fe00::", "reserved"), ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"),
    ("fe80::", "link-local"), ("fe80::1%eth0", "link-local"),
    ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local"), ("fec0::", "private"),
    ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "private"), ("ff00::", "multicast"),
    ("ff02::1", "multicast"), ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "multicast"),
]  # fmt: skip

# IPv6 spellings of IPv4 addresses: judged as the IPv4 address they carry.
SPELLINGS = [
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:7f00:1", "loopback"),
    ("::ffff:169.254.169.254", "metadata"), ("::ffff:a9fe:a9fe", "metadata"),
    ("::ffff:10.0.0.1", "private"), ("::ffff:100.64.0.1", "cgnat"),
    ("::ffff:0.0.0.0", "unspecified"), ("::ffff:224.0.0.1", "multicast"),
    ("::ffff:8.8.8.8", None), ("::ffff:0:127.0.0.1", "loopback"),
    ("64:ff9b::127.0.0.1", "loopback"), ("64:ff9b::169.254.169.254", "metadata"),
    ("64:ff9b::8.8.8.8", None), ("2002:7f00:1::", "loopback"), ("2002:a9fe:a9fe::1", "metadata"),
    ("2002:0a00:0001::", "private"), ("2002:0808:0808::1", None),
    ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated): no IPv4 meaning, refused
]  # fmt: skip

IPV4_TABLE = [
    ("0.0.0.0/8", "unspecified"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "cgnat"),
    ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"), ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"), ("192.0.2.0/24", "reserved"), ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"), ("198.18.0.0/15", "reserved"),
    ("198.51.100.0/24", "reserved"), ("203.0.113.0/24", "reserved"),
    ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
]  # fmt: skip
IPV6_TABLE = [
    ("fc00::/7", "private"), ("fe80::/10", "link-local"), ("ff00::/8", "multicast"),
    ("2001:db8::/32", "reserved"),
]  # fmt: skip


def _mapped(address: IPv4Address) -> IPv6Address:
    return IPv6Address(0xFFFF_0000_0000 | int(address))


@pytest.mark.parametrize(("text", "reason"), EDGES)
def test_each_range_is_refused_up_to_its_edges_and_no_further(
    text: str, reason: str | None
) -> None:
    """The first and last address of every refused range, and their neighbours outside."""
    assert refusal(ipaddress.ip_address(text)) == reason


@pytest.mark.parametrize(("text", "reason"), SPELLINGS)
def test_ipv6_spellings_of_ipv4_addresses_are_judged_as_those(
    text: str, reason: str | None
) -> None:
    """IPv4-mapped, -translated, NAT64 and 6to4 addresses: the class of the IPv4 inside."""
    assert refusal(IPv6Address(text)) == reason


@FAST
@given(st.ip_addresses(v=4))
@example(IPv4Address("127.0.0.1"))
@example(IPv4Address("169.254.169.254"))
def test_every_ipv4_address_is_judged_alike_in_each_ipv6_spelling(address: IPv4Address) -> None:
    """Whatever the IPv4 address, its mapped, translated, NAT64 and 6to4 forms get its class:
    no IPv6 spelling reaches what the IPv4 form may not."""
    expected = refusal(address)
    as_int = int(address)
    assert refusal(_mapped(address)) == expected
    assert refusal(IPv6Address(0xFFFF_0000_0000_0000 | as_int)) == expected  # ::ffff:0:a.b.c.d
    assert refusal(IPv6Address("64:ff9b::") + as_int) == expected
    assert refusal(IPv6Address((0x2002 << 112) | (as_int << 80))) == expected


@FAST
@given(st.data())
def test_every_address_of_a_refused_range_is_refused(data: st.DataObject) -> None:
    """Any address drawn from a refused range has that range's class (or `metadata`)."""
    network, reason = data.draw(st.sampled_from(IPV4_TABLE + IPV6_TABLE))
    address = data.draw(st.ip_addresses(network=network))
    assert refusal(address) in (reason, "metadata")


@FAST
@given(st.ip_addresses())
@example(IPv6Address("2002:0808:0808::1"))
def test_what_is_allowed_is_globally_reachable(address: IPv4Address | IPv6Address) -> None:
    """An address we would connect to is one the standard library also calls global: the
    tables refuse at least what `ipaddress` knows to be special. (An IPv6 spelling of an IPv4
    address is compared as that address: `ipaddress` judges those differently from one
    Python release to the next.)"""
    if refusal(address) is not None:
        return
    inner = embedded_ipv4(address) if isinstance(address, IPv6Address) else None
    target = address if inner is None else inner
    assert target.is_global
    assert not target.is_private
    assert not target.is_loopback
    assert not target.is_link_local
    assert not target.is_multicast
    assert not target.is_unspecified
    assert not target.is_reserved


@FAST
@given(st.data(), st.sampled_from([4, 6]))
def test_the_allow_list_admits_exactly_its_networks(
    data: st.DataObject, version: Literal[4, 6]
) -> None:
    """Inside an allowed network every address (and its IPv4-mapped form) is admitted;
    outside it, the policy refuses exactly what the classification refuses."""
    bits = 32 if version == 4 else 128
    seed = data.draw(st.ip_addresses(v=version))
    prefix = data.draw(st.integers(min_value=bits - 24, max_value=bits))
    network = ipaddress.ip_network(f"{seed}/{prefix}", strict=False)
    policy = policy_of(parse_allow(str(network)))
    inside = data.draw(st.ip_addresses(network=network))
    assert policy.refusal(inside) is None
    if isinstance(inside, IPv4Address):
        assert policy.refusal(_mapped(inside)) is None
    other = data.draw(st.ip_addresses(v=version))
    if other not in network:
        assert policy.refusal(other) == refusal(other)


def test_an_empty_allow_list_refuses_every_internal_class() -> None:
    """The production default admits public addresses only."""
    policy = policy_of(())
    for text, reason in EDGES + SPELLINGS:
        assert policy.refusal(ipaddress.ip_address(text)) == reason


def test_allow_entries_are_networks_or_names() -> None:
    """CIDRs are normalised, bare addresses become /32 or /128, names are lower-cased."""
    assert parse_allow("127.0.0.0/8, ::1  Hooks.Example.COM. localhost") == (
        "127.0.0.0/8", "::1/128", "hooks.example.com", "localhost",
    )  # fmt: skip
    assert parse_allow("none") == ()
    for bad in ("10.0.0.1/8", "300.1.1.1", "fe80::/129", "bad_name!", "-x", "[::1]"):
        with pytest.raises(ValueError, match=r"not a network|neither"):
            parse_allow(bad)


def test_the_setting_defaults_to_public_only_and_to_loopback_under_dev() -> None:
    """AUTHLEDGER_OUTBOUND_ALLOW: empty for serve/worker, loopback for dev unless set; a bad
    entry stops start-up with one line naming the variable."""
    base = {
        "AUTHLEDGER_DATABASE_URL": "postgresql://db/x", "AUTHLEDGER_NATS_URL": "nats://n:4222",
        "AUTHLEDGER_ADMIN_TOKEN": "a" * 20, "AUTHLEDGER_SECRET_KEY": "b" * 40,
    }  # fmt: skip
    assert Settings.from_env(base, "serve").outbound_allow == ()
    assert Settings.from_env(base, "worker").outbound_allow == ()
    assert Settings.from_env({}, "dev").outbound_allow == LOOPBACK
    assert Settings.from_env({"AUTHLEDGER_OUTBOUND_ALLOW": "none"}, "dev").outbound_allow == ()
    chosen = {**base, "AUTHLEDGER_OUTBOUND_ALLOW": "10.0.0.0/8 hooks.internal"}
    assert Settings.from_env(chosen, "serve").outbound_allow == ("10.0.0.0/8", "hooks.internal")
    with pytest.raises(ConfigError, match=r"^AUTHLEDGER_OUTBOUND_ALLOW: '10\.0\.0\.1/8'"):
        Settings.from_env({**base, "AUTHLEDGER_OUTBOUND_ALLOW": "10.0.0.1/8"}, "serve")


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"), ("127.1", "loopback"), ("0x7f.1", "loopback"),
        ("2130706433", "loopback"), ("017700000001", "loopback"), ("localhost", "loopback"),
        ("LocalHost.", "loopback"), ("api.localhost", "loopback"), ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
        ("10.0.0.1", "private"), ("0.0.0.0", "unspecified"),  # noqa: S104 -- no binding
        ("example.com", None), ("8.8.8.8", None), ("localhost.example.com", None),
        ("127.0.0.1.example.com", None),
    ],
)  # fmt: skip
def test_registration_refuses_internal_literals_and_localhost(
    host: str, reason: str | None
) -> None:
    """At registration a URL's host is refused when it is an internal address in any form
    the resolver reads as one, or a localhost name; other names wait for the connect-time
    check. Allowing loopback admits the loopback ones."""
    found = policy_of(()).host_refusal(host)
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert found.endswith(f"not a public address ({reason})")
    loopback_ok = policy_of(LOOPBACK).host_refusal(host)
    assert (loopback_ok is None) == (reason in (None, "loopback"))

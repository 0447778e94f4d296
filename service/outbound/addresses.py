"""Which IP addresses an outbound request may reach: public unicast only (security finding 7).

`refusal(address)` names why an address is not public, or None when it is. The tables follow
IANA's special-purpose registries (RFC 6890 and successors), written out here rather than
taken from `ipaddress`'s `is_private`/`is_global`, whose lists changed between Python patch
releases. The reasons are short codes used in logs, metrics and refusals:

- `unspecified` 0.0.0.0/8, ::/128; `loopback` 127.0.0.0/8, ::1/128;
- `private` 10/8, 172.16/12, 192.168/16, fc00::/7 (ULA), fec0::/10 (old site-local);
- `link-local` 169.254/16, fe80::/10; `cgnat` 100.64/10 (RFC 6598 shared space);
- `multicast` 224/4, ff00::/8;
- `metadata`: cloud instance-metadata endpoints, some inside the ranges above (AWS, GCP,
  Azure, OpenStack, Oracle 169.254.169.254 and fd00:ec2::254; ECS/EKS 169.254.170.2 and
  .23; Alibaba 100.100.100.200), one public (Azure's WireServer 168.63.129.16);
- `reserved`: the rest that is no public unicast (IETF protocol assignments, documentation
  and benchmarking nets, 240/4 and broadcast, and every IPv6 address outside 2000::/3 or in
  2001::/23, 2001:db8::/32, 3fff::/20).

IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped
(::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d), NAT64 (64:ff9b::/96) and 6to4
(2002:AABB:CCDD::/48). So ::ffff:127.0.0.1 is `loopback` and 2002:a9fe:a9fe:: is `metadata`.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

Address = IPv4Address | IPv6Address

METADATA: frozenset[Address] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "100.100.100.200",
        "168.63.129.16",
        "fd00:ec2::254",
    )
)

_V4: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "reserved"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),
        ("198.51.100.0/24", "reserved"),
        ("203.0.113.0/24", "reserved"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)

_V6: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), reason)
    for net, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "private"),
        ("fec0::/10", "private"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
        ("2001::/23", "reserved"),
        ("2001:db8::/32", "reserved"),
        ("3fff::/20", "reserved"),
    )
)
_GLOBAL_UNICAST = IPv6Network("2000::/3")
_TRANSLATED = IPv6Network("::ffff:0:0:0/96")
_NAT64 = IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = IPv6Network("2002::/16")


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, translated, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _TRANSLATED or address in _NAT64:
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


def refusal(address: Address) -> str | None:
    """Why `address` is no public unicast address (see the module docstring), or None."""
    if isinstance(address, IPv6Address):
        if address.scope_id is not None:
            address = IPv6Address(int(address))  # the zone does not change the range
        inner = embedded_ipv4(address)
        if inner is not None:
            return refusal(inner)
    if address in METADATA:
        return "metadata"
    if isinstance(address, IPv4Address):
        return next((reason for net, reason in _V4 if address in net), None)
    found = next((reason for net, reason in _V6 if address in net), None)
    if found is None and address not in _GLOBAL_UNICAST:
        return "reserved"
    return found


def parse_address(text: str) -> Address | None:
    """`text` as an IP address (IPv6 with or without brackets or a zone), or None."""
    try:
        return ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None

"""Who the client is: the socket peer, or, behind proxies the operator trusts, the address they
forwarded (security finding 6).

`AUTHLEDGER_TRUSTED_PROXIES` lists the proxies' networks (empty by default: the peer is the
client). `X-Forwarded-For` is read only when the peer itself is in one of them; every header
line counts, in order, as one comma-separated list (RFC 9110 §5.3). Each trusted proxy appends
the address it saw, so the list is walked from the right: the first entry outside the trusted
networks is the client, and anything to its left, which the client wrote, is never read. An
entry that is no address (`unknown`, garbage) stops the walk: the nearest trusted hop wrote it,
so nothing further left can be trusted, and the last trusted address seen stands for the
client (clients behind such a proxy share its budget; none can choose another). Empty items
are ignored; ports (`203.0.113.5:4711`, `[2001:db8::1]:443`) and brackets are dropped; an
IPv4-mapped IPv6 address counts as its IPv4 address. When every entry is a trusted proxy, the
leftmost is the client.

The address found here keys the rate limits (service.ratelimit.limiter) and is the one sealed
into the events' metadata (service.commands.context).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_FOR = "x-forwarded-for"
TRUSTED_PROXIES = "trusted_proxies"  # the app state's key for Settings.trusted_proxies


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Settings.trusted_proxies (checked CIDRs) as networks."""
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


def address_of(text: str) -> Address | None:
    """An entry of X-Forwarded-For (or a peer) as an address, or None when it is none."""
    entry, port = text.strip(), ""
    if entry.startswith("["):  # [v6] or [v6]:port
        entry, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else ""
    elif entry.count(":") == 1:  # v4:port
        entry, _, port = entry.partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return None
    try:
        address = ipaddress.ip_address(entry)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def forwarded_entries(headers: Iterable[str]) -> list[str]:
    """Every X-Forwarded-For header line, in order, as one list of entries."""
    return [entry for line in headers for entry in line.split(",")]


def client_address(
    peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[Network]
) -> str | None:
    """The client's address: `peer`, unless it is a trusted proxy and `forwarded_for` (the
    X-Forwarded-For header lines) names the client beyond the trusted ones."""
    if not peer:
        return None
    if not proxies:  # the usual case: no address to parse
        return peer
    peer_address = address_of(peer)
    if peer_address is None or not _trusted(peer_address, proxies):
        return peer
    farthest: Address = peer_address
    for entry in reversed(forwarded_entries(forwarded_for)):
        if not entry.strip():
            continue
        address = address_of(entry)
        if address is None:
            return str(farthest)  # a trusted hop wrote something else: read no further left
        if not _trusted(address, proxies):
            return str(address)
        farthest = address
    return str(farthest)

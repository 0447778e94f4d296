"""What outbound requests may reach besides public addresses: `AUTHLEDGER_OUTBOUND_ALLOW`.

The allow-list holds CIDRs (a bare address is its /32 or /128) and host names, comma- or
space-separated; empty (the default of `serve` and `worker`) means public addresses only.
`authledger dev` allows loopback (`LOOPBACK`) unless the variable says otherwise; `none` is
the empty list spelled out. A CIDR admits the addresses inside it, including their IPv6 forms
(::ffff:127.0.0.1 is inside 127.0.0.0/8). A host name admits whatever it resolves to, so
list names only of hosts whose DNS you control.

Two checks use the policy: `host_refusal` when an operator registers a URL (an address
literal, in any form the resolver would read as one, or a `localhost` name, refused with a
clear 400), and `refusal` at connect time on every resolved address
(`service.outbound.transport`). Only the second one stops DNS tricks; the first one is a
courtesy to the operator who typed an internal URL.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from service.outbound.addresses import Address, embedded_ipv4, parse_address, refusal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
NONE = "none"
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


def normal_name(host: str) -> str:
    """A host name as compared: lower case, without the root's trailing dot."""
    return host.strip().lower().removesuffix(".")


def parse_allow(raw: str) -> tuple[str, ...]:
    """The setting's entries, normalised (CIDRs as `ipaddress` writes them, names in lower
    case), duplicates dropped; ValueError names the first entry that is neither."""
    if raw.strip().lower() == NONE:
        return ()
    entries: list[str] = []
    for item in raw.replace(",", " ").split():
        try:
            entries.append(str(ipaddress.ip_network(item, strict=True)))
            continue
        except ValueError:
            pass
        name = normal_name(item)
        numeric = all(_NUMERIC_LABEL.fullmatch(label) for label in name.split("."))
        if numeric or any(c in item for c in ":/[]"):
            raise ValueError(
                f"{item!r} is not a network (a CIDR such as 10.0.0.0/8 or fd00::/8, without "
                "host bits)"
            )
        if _NAME.fullmatch(name) is None:
            raise ValueError(f"{item!r} is neither a network nor a host name")
        entries.append(name)
    return tuple(dict.fromkeys(entries))


def numeric_host(host: str) -> Address | None:
    """The address a URL's host stands for without DNS: an IP literal, or an IPv4 address in
    a form the C resolver also reads (`127.1`, `0x7f.1`, `2130706433`, `017700000001`)."""
    found = parse_address(host)
    if found is not None:
        return found
    name = normal_name(host)
    labels = name.split(".")
    if not 1 <= len(labels) <= 4 or not all(_NUMERIC_LABEL.fullmatch(x) for x in labels):
        return None
    try:
        return IPv4Address(socket.inet_aton(name))
    except OSError:
        return None


@dataclass(frozen=True)
class OutboundPolicy:
    """Public addresses, plus what the allow-list names; see the module docstring."""

    networks: tuple[Network, ...] = ()
    names: frozenset[str] = frozenset()

    def allows_name(self, host: str) -> bool:
        return normal_name(host) in self.names

    def refusal(self, address: Address) -> str | None:
        """Why a connection to `address` is refused, or None when it may be made."""
        reason = refusal(address)
        if reason is None:
            return None
        forms: list[Address] = [address]
        if isinstance(address, IPv6Address):
            bare = IPv6Address(int(address))  # without a zone
            inner = embedded_ipv4(bare)
            forms = [bare] if inner is None else [bare, inner]
        admitted = any(
            form in net for form in forms for net in self.networks if form.version == net.version
        )
        return None if admitted else reason

    def host_refusal(self, host: str) -> str | None:
        """At registration: why a URL with this host is refused outright (an address literal
        that is not admitted, or a `localhost` name while loopback is not), or None (other
        names are checked when connecting, on what they resolve to)."""
        if self.allows_name(host):
            return None
        address = numeric_host(host)
        if address is not None:
            reason = self.refusal(address)
            return None if reason is None else f"{host} is not a public address ({reason})"
        name = normal_name(host)
        if name == "localhost" or name.endswith(".localhost"):  # RFC 6761 §6.3
            loopback = (IPv4Address("127.0.0.1"), IPv6Address("::1"))
            if any(self.refusal(a) is not None for a in loopback):
                return f"{host} is not a public address (loopback)"
        return None


@functools.lru_cache(maxsize=16)
def policy_of(entries: tuple[str, ...]) -> OutboundPolicy:
    """The policy of `parse_allow`'s entries (Settings.outbound_allow)."""
    networks: list[Network] = []
    names: set[str] = set()
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError:
            names.add(normal_name(entry))
    return OutboundPolicy(tuple(networks), frozenset(names))


def policy_from(entries: Iterable[str]) -> OutboundPolicy:
    """`policy_of` for any iterable of entries, checked as the setting checks them."""
    return policy_of(parse_allow(" ".join(entries)))

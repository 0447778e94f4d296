"""Attack (issue 12, finding 6): behind a reverse proxy every client shares the proxy's address,
so one agent spends everyone's per-IP budget; and a client that sends its own
`X-Forwarded-For` must not pick its rate-limit key.

Before the fix the rate limits and the sealed metadata took the socket peer only: behind a
proxy all clients had one budget. Now `AUTHLEDGER_TRUSTED_PROXIES` names the proxies; only from
one of them is `X-Forwarded-For` read, right to left, and the first entry outside the trusted
networks is the client: its own budget, its address sealed into the events. From any other peer
the header is ignored."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from service.crypto.tokens import token_hash
from service.http.client_address import Network, address_of, client_address, forwarded_entries
from service.settings import ConfigError, Settings
from tests.support.app_client import ADMIN_TOKEN, CLIENT_IP, Service, running_service
from tests.support.backends import Backend
from tests.support.serve_process import SECRETS, authledger_env, serving

REGISTER = "/agent/auth"
ANONYMOUS = {"type": "anonymous", "requested_credential_type": "api_key"}
PER_IP = 5  # spec §10: anonymous registrations per hour per IP
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROXY = "10.1.2.3"
PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


async def _register(svc: Service, forwarded_for: str | None) -> httpx.Response:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    return await svc.client.post(REGISTER, json=ANONYMOUS, headers=headers)


@pytest.fixture
async def untrusted(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    """Rate limits on, no trusted proxy: the ASGI client's peer (CLIENT_IP) is the client."""
    async with running_service(backend, database_url, RATE_LIMITS="on") as svc:
        yield svc


@pytest.fixture
async def behind_proxy(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    """Rate limits on, and the ASGI client's peer (CLIENT_IP) is a trusted proxy."""
    async with running_service(
        backend, database_url, RATE_LIMITS="on", TRUSTED_PROXIES=f"{CLIENT_IP}/32, 10.0.0.0/8"
    ) as svc:
        yield svc


async def test_rotating_forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit(
    untrusted: Service,
) -> None:
    """A new X-Forwarded-For on each call is ignored from an untrusted peer: the sixth anonymous
    registration is refused like without the header, and writes nothing."""
    for n in range(PER_IP):
        assert (await _register(untrusted, f"198.51.100.{n}")).status_code == 200
    head = await untrusted.head()
    refused = await _register(untrusted, "198.51.100.200")
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "rate_limited"
    assert await untrusted.head() == head


@pytest.mark.parametrize("http_server", ["uvicorn", "granian"])
async def test_the_http_server_reads_no_forwarded_for_of_its_own(
    backend: Backend, database_url: str, http_server: str
) -> None:
    """The same rotation against a real `serve` from loopback: the HTTP server itself must
    not take a client from X-Forwarded-For (uvicorn does by default for a peer on 127.0.0.1,
    before the app sees the request: each spoofed address then had its own budget)."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url,
        AUTHLEDGER_NATS_URL=backend.nats_url,
        AUTHLEDGER_HTTP_SERVER=http_server,
        AUTHLEDGER_RATE_LIMITS="on",
        **SECRETS,
    )
    async with serving([], env) as server:
        for n in range(PER_IP):
            answer = await server.http.post(
                REGISTER, json=ANONYMOUS, headers={"X-Forwarded-For": f"198.51.100.{n}"}
            )
            assert answer.status_code == 200, answer.text
        refused = await server.http.post(
            REGISTER, json=ANONYMOUS, headers={"X-Forwarded-For": "198.51.100.200"}
        )
        assert refused.status_code == 429, refused.text


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(
    behind_proxy: Service,
) -> None:
    """Two clients behind the proxy each get five registrations; the sixth of one is refused
    while the other's budget is untouched by it."""
    first, second = f"203.0.113.5, {PROXY}", "2001:db8:1::7"
    for _ in range(PER_IP):
        assert (await _register(behind_proxy, first)).status_code == 200
    assert (await _register(behind_proxy, first)).status_code == 429
    for _ in range(PER_IP):
        assert (await _register(behind_proxy, second)).status_code == 200
    assert (await _register(behind_proxy, second)).status_code == 429


async def test_behind_a_trusted_proxy_spoofed_left_entries_do_not_change_the_key(
    behind_proxy: Service,
) -> None:
    """Entries left of the rightmost untrusted one are the client's own: rotating them does not
    escape its limit."""
    for n in range(PER_IP):
        response = await _register(behind_proxy, f"198.51.100.{n}, 203.0.113.9")
        assert response.status_code == 200
    refused = await _register(behind_proxy, "198.51.100.200, 203.0.113.9")
    assert refused.status_code == 429


async def test_the_forwarded_client_is_the_address_sealed_into_the_events(
    behind_proxy: Service,
) -> None:
    """The audit timeline opens the forwarded client's address, not the proxy's."""
    registered = await _register(behind_proxy, "203.0.113.77")
    assert registered.status_code == 200, registered.text
    key = registered.json()["credential"]
    row = await behind_proxy.row("credentials", "token_hash", token_hash(key))
    path = f"/admin/audit/credential/{row['credential_id']}/timeline"
    timeline = await behind_proxy.client.get(path, headers=ADMIN)
    assert timeline.status_code == 200, timeline.text
    ips = {entry["client_ip"] for entry in timeline.json()["entries"]}
    assert ips == {"203.0.113.77"}


# the parsing, unit by unit

CASES: list[tuple[str, str | None, Sequence[str], Sequence[Network], str | None]] = [
    ("no proxies trusted: the header is ignored", PROXY, ["1.2.3.4"], (), PROXY),
    ("an untrusted peer: the header is ignored", "192.0.2.1", ["1.2.3.4"], PROXIES, "192.0.2.1"),
    ("a trusted peer without the header is the client", PROXY, [], PROXIES, PROXY),
    ("the rightmost untrusted entry", PROXY, ["6.6.6.6, 1.2.3.4, 10.9.9.9"], PROXIES, "1.2.3.4"),
    ("several header lines are one list", PROXY, ["1.2.3.4", "5.6.7.8, 10.0.0.1"], PROXIES,
     "5.6.7.8"),
    ("a malformed entry stops the walk: the client-written entry left of it is not read",
     PROXY, ["1.2.3.4, unknown"], PROXIES, PROXY),
    ("stopping at the nearest trusted hop", PROXY, ["6.6.6.6, _x, 10.0.0.7"], PROXIES,
     "10.0.0.7"),
    ("empty items are ignored", PROXY, ["1.2.3.4, , "], PROXIES, "1.2.3.4"),
    ("only malformed entries: the peer", PROXY, ["unknown, nope"], PROXIES, PROXY),
    ("every entry trusted: the leftmost", PROXY, ["10.0.0.1, 10.0.0.2"], PROXIES, "10.0.0.1"),
    ("IPv6 client, IPv6 proxy", "fd00::1", ["2001:db8::5, fd12::9"], PROXIES, "2001:db8::5"),
    ("IPv6 with brackets and a port", PROXY, ["[2001:db8::5]:4711"], PROXIES, "2001:db8::5"),
    ("IPv4 with a port", PROXY, ["203.0.113.5:4711"], PROXIES, "203.0.113.5"),
    ("an IPv4-mapped peer is its IPv4 address", "::ffff:10.1.2.3", ["1.2.3.4"], PROXIES,
     "1.2.3.4"),
    ("an IPv4-mapped entry is its IPv4 address", PROXY, ["::ffff:10.0.0.5, ::ffff:1.2.3.4"],
     PROXIES, "1.2.3.4"),
    ("an unparsable peer is kept as it is", "testclient", ["1.2.3.4"], PROXIES, "testclient"),
    ("no peer: unknown", None, ["1.2.3.4"], PROXIES, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("peer", "headers", "proxies", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_client_address(
    peer: str | None, headers: Sequence[str], proxies: Sequence[Network], expected: str | None
) -> None:
    """The client is the peer, or from a trusted peer the rightmost untrusted valid entry."""
    assert client_address(peer, headers, proxies) == expected


def test_forwarded_entries_keep_the_order_of_the_header_lines() -> None:
    """Header lines join in order, as RFC 9110 §5.3 makes them one list."""
    assert forwarded_entries(["a, b", "c"]) == ["a", " b", "c"]


@pytest.mark.parametrize("entry", ["", "unknown", "[2001:db8::1", "1.2.3.4:x", "1.2.3", "::g"])
def test_malformed_entries_are_no_address(entry: str) -> None:
    """Anything that is not an address (after dropping a port or brackets) reads as None."""
    assert address_of(entry) is None


def test_trusted_proxies_setting_reads_comma_or_space_separated_cidrs() -> None:
    """Both separators, IPv4 and IPv6, a bare address as its /32; empty by default."""
    base = {
        "AUTHLEDGER_DATABASE_URL": "postgresql://app@db/authledger",
        "AUTHLEDGER_NATS_URL": "nats://nats:4222",
        "AUTHLEDGER_ADMIN_TOKEN": "a" * 24,
        "AUTHLEDGER_SECRET_KEY": "s" * 40,
    }
    assert Settings.from_env(base).trusted_proxies == ()
    settings = Settings.from_env(
        {**base, "AUTHLEDGER_TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8 192.0.2.7"}
    )
    assert settings.trusted_proxies == ("10.0.0.0/8", "fd00::/8", "192.0.2.7/32")
    for bad in ("10.0.0.0/33", "10.0.0.1/8", "proxy.internal"):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({**base, "AUTHLEDGER_TRUSTED_PROXIES": bad})
        message = str(caught.value)
        assert message.startswith("AUTHLEDGER_TRUSTED_PROXIES: ")
        assert "\n" not in message

"""The revocation feed's client side, for resource servers: the message format (`wire`), a
subscriber keeping a local revoked set (`client`), and `authledger subscribe` (`cli`).

Imports nothing from the service's own packages (only nats-py, httpx, msgspec, cryptography
and the standard library), so a resource server can use it without the service's dependencies
on Postgres or Litestar being exercised. It is also a distribution of its own
(`subscriber/pyproject.toml`: `authledger-subscriber`, with the `authledger-subscriber` command),
which installs none of them.
"""

from subscriber.client import RevocationSubscriber, SubscriberConfig, SubscriberStats
from subscriber.wire import Revocation

__all__ = ["Revocation", "RevocationSubscriber", "SubscriberConfig", "SubscriberStats"]

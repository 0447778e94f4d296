"""What a running process holds: the Postgres pool, the event store and the NATS client.

Opened once at start-up and closed at shutdown by `service.runtime.loops`; the HTTP app receives
them ready-made. NATS or Postgres may be down when we start: the NATS link keeps trying in
the background, the pool connects on demand, and `/readyz` says what is missing meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import cast

import asyncpg
import structlog
from nats.aio.client import Client as NatsClient

from events.clock import Clock, SystemClock
from events.envelope import RecordedEvent
from events.sessions import reset_if_marked
from events.store import EventStore
from migrations.runner import MigrationError, pending
from service.caches.access import AccessCache
from service.caches.credentials import CredentialCache
from service.commands.context import Context
from service.commands.erasure import ERASURES, erased_subjects
from service.crypto.pii import Sealer
from service.crypto.secret_keys import WrongSecret, load_server_keys
from service.crypto.signing import KeyRing
from service.observability.metrics import Metrics, multiprocess_dir
from service.outbound.policy import policy_of
from service.providers.jwks import JwksCache
from service.ratelimit import RateLimiter, WindowStore, load_limits
from service.settings import ConfigError, Settings
from service.signin.keys import SignInKeys
from service.signin.oidc import OidcSignIn
from service.signin.oidc_provider import OidcSettings
from service.tenancy.config import TenantConfig
from service.tenancy.directory import TENANT_EVENT_TYPES, TenantDirectory

log = structlog.get_logger("service.runtime.resources")
CHECK_TIMEOUT = 2.0
# A process's connections for its work (`authledger worker` adds those its workers hold for
# as long as they run: workers.runner.HELD_CONNECTIONS).
POOL_SIZE = 10


class NatsLink:
    """A NATS client that keeps trying to connect, and later to reconnect, forever."""

    def __init__(self, url: str, *, name: str = "authledger") -> None:
        self._url = url
        self._name = name
        self._client = NatsClient()
        self._connecting: asyncio.Task[None] | None = None
        self._failing = False
        self._closing = False

    @property
    def client(self) -> NatsClient:
        return self._client

    @property
    def connected(self) -> bool:
        return self._client.is_connected

    async def start(self, *, wait: float = 3.0) -> None:
        """Connect, waiting at most `wait` seconds; past that, keep trying in the background."""
        self._connecting = asyncio.get_running_loop().create_task(
            self._client.connect(
                self._url,
                name=self._name,
                connect_timeout=2,
                max_reconnect_attempts=-1,  # never give up, on the first connect as later
                reconnect_time_wait=1,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            ),
            name="nats-connect",
        )
        await asyncio.wait({self._connecting}, timeout=wait)
        if self._connecting.done():
            self._connecting.result()
        else:
            log.warning("nats.waiting", url=self._url)
        self._connecting.add_done_callback(self._on_connected)

    def _on_connected(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("nats.connect_failed", error=repr(task.exception()))
            return
        self._failing = False
        log.info("nats.connected", url=self._url)

    async def close(self) -> None:
        self._closing = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._client.is_closed:
            return
        if self._client.is_connected:
            try:
                await asyncio.wait_for(self._client.drain(), 5)
            except Exception as exc:
                log.warning("nats.drain_failed", error=f"{type(exc).__name__}: {exc}")
            else:
                return
        await self._client.close()

    async def _on_error(self, exc: Exception) -> None:
        if not self._failing:
            log.warning("nats.error", error=f"{type(exc).__name__}: {exc}")
        self._failing = True

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("nats.disconnected")

    async def _on_reconnected(self) -> None:
        self._failing = False
        log.info("nats.reconnected")


def oidc_sign_in(settings: Settings, clock: Clock) -> OidcSignIn | None:
    """Sign-in through the installation's OpenID provider, when one is configured: its
    requests go through the outbound guard (`AUTHLEDGER_OUTBOUND_ALLOW`), plain http only on
    loopback with `AUTHLEDGER_JWKS_ALLOW_LOOPBACK_HTTP`."""
    if settings.oidc_issuer is None or settings.oidc_client_id is None or not settings.secret_key:
        return None
    provider = OidcSettings(
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        scopes=settings.oidc_scopes,
        name=settings.oidc_name,
    )
    return OidcSignIn(
        provider, SignInKeys.from_secret(settings.secret_key), clock=clock,
        outbound=policy_of(settings.outbound_allow),
        allow_loopback_http=settings.jwks_allow_loopback_http,
    )  # fmt: skip


@dataclass
class Resources:
    settings: Settings
    pool: asyncpg.Pool
    store: EventStore
    nats: NatsLink
    commands: Context | None = None  # what the commands need; None without a secret key
    credentials: CredentialCache | None = None  # bearer checks; follows the log from first use
    limiter: RateLimiter = field(default_factory=RateLimiter)  # spec §10; off without a secret
    metrics: Metrics | None = None  # /metrics (service.observability.metrics)
    tenants: TenantDirectory | None = None  # which tenant a Host is; kept current by the feed
    access: AccessCache | None = None  # scoped operator credentials; emptied by the feed
    oidc: OidcSignIn | None = None  # the installation's OpenID provider (AUTHLEDGER_OIDC_*)
    _contexts: dict[str, Context] = field(default_factory=dict)  # per tenant but the default
    _keys_loaded: bool = False  # the sealer holds the retained keys (service.crypto.secret_keys)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        pool_size: int = POOL_SIZE,
        clock: Clock | None = None,
    ) -> Resources:
        limits = load_limits(settings.rate_limits)  # a bad limits file stops start-up here
        # min_size=0: a process may start before Postgres answers; /readyz reports it.
        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=0,
            max_size=pool_size,
            reset=reset_if_marked,  # events/sessions.py: no reset round trip per query
        )
        link = NatsLink(settings.nats_url)
        try:
            await link.start()
        except BaseException:
            await link.close()
            await pool.close()
            raise
        opened = cls(
            settings=settings,
            pool=pool,
            store=EventStore(pool, gather_wait=_seconds(settings.write_hold_ms)),
            nats=link,
        )
        opened.credentials = CredentialCache(pool, feed_url=settings.database_url)
        opened.tenants = TenantDirectory(settings)
        opened.credentials.add_hook(TENANT_EVENT_TYPES, opened.tenants.apply)
        opened.access = AccessCache(pool, opened.credentials)
        try:
            await opened.tenants.load(pool)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("tenants.not_loaded", error=type(exc).__name__)  # /readyz says why
        metrics = opened.metrics = Metrics(
            pool,
            opened.credentials,
            relay_checkpoint=f"relay:{settings.nats_stream}",
            tenant_id=TenantConfig.from_settings(settings).tenant_id,
            clock=clock,
            multiprocess_dir=multiprocess_dir(),
        )
        cache = opened.credentials

        def recorded(events: Sequence[RecordedEvent]) -> None:
            cache.observe(events)
            metrics.observe_appended(events)

        if settings.secret_key:
            clock = clock or SystemClock()
            sealer = Sealer(settings.secret_key)
            try:  # the retained keys: a blind index must never be made without them
                sealer.adopt(await load_server_keys(pool, settings.secret_key))
                opened._keys_loaded = True
            except WrongSecret as exc:
                await opened.close()
                raise ConfigError(str(exc)) from None
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("secret_keys.not_loaded", error=type(exc).__name__)  # on first use
            opened.credentials.add_hook(
                ERASURES, lambda recorded: sealer.forget(*erased_subjects(recorded))
            )
            opened.commands = Context(
                store=opened.store,
                tenant=TenantConfig.from_settings(settings),
                sealer=sealer,
                secret_key=settings.secret_key,
                clock=clock,
                keyring=KeyRing(settings.secret_key),
                on_recorded=recorded,
                provider_keys=JwksCache(
                    clock=clock,
                    allow_loopback_http=settings.jwks_allow_loopback_http,
                    outbound=policy_of(settings.outbound_allow),
                    observe_refused=lambda reason: metrics.outbound_refused.labels(
                        "jwks", reason
                    ).inc(),
                ),
            )
            opened.oidc = oidc_sign_in(settings, clock)
            opened.limiter = RateLimiter(
                limits,
                WindowStore(pool),
                secret_key=settings.secret_key,
                clock=clock,
                failure=settings.rate_limit_failure,
                observe=lambda result: metrics.rate_limits.labels(result).inc(),
            )
            try:
                await opened.command_context()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("signing.not_ready", error=type(exc).__name__)  # retried on use
        return opened

    async def command_context(self) -> Context:
        """The commands' Context with an active signing key (made now if Postgres was down
        when the process started)."""
        if self.commands is None:
            raise RuntimeError("the commands need AUTHLEDGER_SECRET_KEY")
        if not self._keys_loaded:  # Postgres was down at start-up
            keys = await load_server_keys(self.pool, self.commands.secret_key)
            self.commands.sealer.adopt(keys)
            self._keys_loaded = True
        keyring = self.commands.keyring
        if keyring.active is None:
            await keyring.ensure_active(self.pool, self.commands.clock.now())
        return self.commands

    async def context_for(self, tenant: TenantConfig) -> Context:
        """The commands' Context for `tenant`: its configuration and its own signing keys,
        sharing everything else (store, sealer, clock, provider keys) with the default's."""
        base = await self.command_context()
        if tenant.tenant_id == base.tenant.tenant_id:
            return base
        ctx = self._contexts.get(tenant.tenant_id)
        if ctx is None or ctx.tenant is not tenant:  # new, or reconfigured since
            ring = ctx.keyring if ctx is not None else KeyRing(base.secret_key, tenant.tenant_id)
            ctx = self._contexts[tenant.tenant_id] = replace(base, tenant=tenant, keyring=ring)
        if ctx.keyring.active is None:
            await ctx.keyring.ensure_active(self.pool, ctx.clock.now())
        return ctx

    async def close(self) -> None:
        """Flush queued appends, then close NATS and the pool, in that order."""
        await self.store.close()
        if self.commands is not None and self.commands.provider_keys is not None:
            await self.commands.provider_keys.close()
        if self.oidc is not None:
            await self.oidc.close()
        if self.credentials is not None:
            await self.credentials.close()
        await self.nats.close()
        try:
            await asyncio.wait_for(self.pool.close(), 10)
        except TimeoutError:
            log.warning("pool.close_timeout")
            self.pool.terminate()

    async def unready_reasons(self) -> list[str]:
        """Why this process should not take traffic yet; empty when it is ready."""
        reasons = []
        try:
            async with asyncio.timeout(CHECK_TIMEOUT), self.pool.acquire() as conn:
                todo = await pending(cast(asyncpg.Connection, conn))
            if todo:
                names = ", ".join(f"{m.version:04d}_{m.name}" for m in todo)
                reasons.append(f"migrations pending: {names} (run `authledger migrate`)")
        except MigrationError as exc:
            reasons.append(f"migrations: {exc}")
        except Exception as exc:
            reasons.append(f"postgres unavailable: {type(exc).__name__}")
        if not self.nats.connected:
            reasons.append("nats not connected")
        return reasons


def _seconds(milliseconds: int | None) -> float | None:
    return None if milliseconds is None else milliseconds / 1000

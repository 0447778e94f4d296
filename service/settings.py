"""Settings from `AUTHLEDGER_*` environment variables, validated once at start-up.

A bad or missing value raises ConfigError whose message is one line naming the variable;
the CLI prints it and exits. Nothing reads the environment at import time.
"""

from __future__ import annotations

import difflib
import ipaddress
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from service.outbound.policy import LOOPBACK, parse_allow

T = TypeVar("T")
PREFIX = "AUTHLEDGER_"
Mode = Literal[
    "dev",
    "serve",
    "worker",
    "migrate",
    "trust",
    "revoke",
    "replay",
    "erase",
    "audit",
    "tenant",
    "access",
    "rotate-secret",
]
# `service_auth` (a login hint, claimed by the person it names) exists at the v0.6 door only;
# `anonymous` and `id_jag` apply at both doors, `verified_email` at v1 only.
FLOWS = ("anonymous", "verified_email", "id_jag", "service_auth")
CREDENTIAL_TYPES = ("access_token", "api_key")
# The HTTP surfaces: `v1` (/agent/auth, auth.md 0.1.0) and `v06` (/agent/identity, 0.6.0),
# both open by default (issue 14); a tenant closes one with `doors`.
DOORS = ("v1", "v06")
DEFAULT_DOORS = DOORS
V06_PROFILES = ("main", "authkit")
SIGN_IN_METHODS = ("email", "oidc")  # how a person proves an address on the v0.6 claim page


class ConfigError(Exception):
    """One line naming the variable and what is wrong with it."""


@dataclass(frozen=True)
class Settings:
    database_url: str  # serve, worker and the operator commands: the runtime role
    nats_url: str
    # migrate and replay: the owner role (docs/security.md, The database roles); None: they
    # use database_url, the single-URL setup of releases before the split
    owner_database_url: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    smtp_url: str | None = None
    admin_token: str | None = None  # deprecated bootstrap operator credential (finding 2)
    secret_key: str | None = None
    data_dir: Path = Path(".authledger")
    nats_stream: str = "AUTHLEDGER"
    nats_subject_prefix: str = "authledger"
    registration_ttl: int = 86_400
    otp_ttl: int = 600
    access_token_ttl: int = 3_600
    scopes: tuple[str, ...] = ("api.read", "api.write")
    pre_claim_scopes: tuple[str, ...] = ("api.read",)
    post_claim_scopes: tuple[str, ...] = ("api.read", "api.write")
    rate_limits: str = "on"
    rate_limit_failure: Literal["open", "closed"] = "open"  # when the limiter's store fails
    resource_url: str | None = None  # None: `<public_url>/api/`
    resource_name: str = "authledger"
    resource_logo_uri: str | None = None
    flows: tuple[str, ...] = FLOWS
    credential_types: tuple[str, ...] = CREDENTIAL_TYPES
    claim_link_ttl: int = 600
    otp_max_misses: int = 5
    otp_max_mints: int = 10
    claim_max_misses: int = 20
    # The v0.6 door (docs/design/v06-dialect.md, section 5.3); per tenant like the above.
    doors: tuple[str, ...] = DEFAULT_DOORS
    v06_profile: Literal["main", "authkit"] = "main"
    assertion_ttl: int = 3_600  # the service-signed identity assertion's lifetime
    claim_poll_interval: int = 5  # the claim grant's `interval`, where its pacing starts
    claim_deliveries: int = 3  # credentials a claimed claim token may still fetch...
    claim_delivery_window: int = 600  # ...within so many seconds of the claim (O-E)
    sign_in: tuple[str, ...] = ("email",)
    sign_in_link_ttl: int = 600
    session_ttl: int = 86_400
    # The OpenID Connect provider people may sign in with: installation-wide only, since a
    # tenant's settings enter the log (`tenant.configured`) and a client secret must not.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)  # None: a public client
    oidc_name: str | None = None  # what the sign-in page calls it
    oidc_scopes: tuple[str, ...] = ("openid", "email")
    contact_url: str | None = None
    terms_url: str | None = None
    privacy_url: str | None = None
    jwks_allow_loopback_http: bool = False  # agent providers on http://127.0.0.1 (dev, tests)
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: str = "info"
    checkpoint_every: int = 1_000  # events between signed chain checkpoints
    checkpoint_minutes: int = 5  # longest an event waits for a signed checkpoint
    # Where signed checkpoints are published off the database (service/audit/published.py);
    # from_env derives them from nats_stream and nats_subject_prefix when unset.
    checkpoint_stream: str = "AUTHLEDGER_CHECKPOINTS"
    checkpoint_subject: str = "authledger-checkpoints"
    # The checkpoint keys `audit verify` trusts (a JWKS file or http(s) URL), pinned by the
    # auditor; None: it checks the chain but vouches for no signature.
    audit_keys: str | None = None
    # CIDRs of the proxies whose X-Forwarded-For names the client (service.http.client_address),
    # normalised ("10.0.0.0/8"); none: the socket peer is the client. Text, not ipaddress
    # objects, so that Litestar's signature model can hold Settings.
    trusted_proxies: tuple[str, ...] = ()
    http_server: Literal["granian", "uvicorn"] = "uvicorn"  # service.runtime.hosting.http_job
    # How long a connection may take to send a request's head (its start or a request's first
    # byte to the end of its headers) before it is closed: service.runtime.uvicorn_host.
    http_head_timeout: int = 30
    # How long the store's writer may hold a batch for callers on their way back (events/writer.py
    # `Writer._gather`): what a request can lose in latency for larger group commits; 0: never;
    # None: the writer's own default (GATHER_WAIT, 4 ms).
    write_hold_ms: int | None = None
    # What webhook and JWKS requests may reach besides public addresses (service.outbound):
    # CIDRs and host names, normalised; empty: public only. `dev`: loopback unless set.
    outbound_allow: tuple[str, ...] = ()
    # What the settings were read from (environment over file), to derive a tenant's own
    # settings from the same base (service/tenancy/directory.py). Holds secrets: never printed.
    source: Mapping[str, str] = field(default_factory=dict, repr=False)
    mode: Mode = "serve"

    def with_services(self, *, database_url: str, nats_url: str) -> Settings:
        return replace(self, database_url=database_url, nats_url=nats_url)

    @property
    def owner_url(self) -> str:
        """Where `migrate` and `replay` connect: the owner role's URL, else the only one."""
        return self.owner_database_url or self.database_url

    @property
    def owner_variable(self) -> str:
        """The variable `owner_url` came from, for messages."""
        return PREFIX + ("OWNER_DATABASE_URL" if self.owner_database_url else "DATABASE_URL")

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        mode: Mode = "serve",
        *,
        fallback: Mapping[str, str] | None = None,
    ) -> Settings:
        """Read and check every variable; `dev` may leave the services to the embedded ones.

        `AUTHLEDGER_CONFIG` may name a TOML file of the same settings (names without the
        prefix, any case); a variable set in the environment wins over the file, and both
        over `fallback` (the running dev stack's, service/dev/card.py).
        """
        from_file = _config_file(env.get(PREFIX + "CONFIG"))
        merged = {**(fallback or {}), **from_file, **env}
        source = {k: v for k, v in merged.items() if k.startswith(PREFIX)}
        r = _Reader(source)
        needs_services = mode != "dev"
        owner_database_url = r.get("OWNER_DATABASE_URL", _url("postgres", "postgresql"), False)
        owner_modes = ("migrate", "replay", "rotate-secret")
        owner_only = mode in owner_modes and owner_database_url is not None
        database_url = r.get(
            "DATABASE_URL", _url("postgres", "postgresql"), needs_services and not owner_only
        )
        nats_url = r.get("NATS_URL", _url("nats", "tls"), mode in ("serve", "worker"))
        needs_secrets = mode in ("serve",)
        nats_stream = r.get("NATS_STREAM", _token, False) or cls.nats_stream
        nats_subject_prefix = r.get("NATS_SUBJECT_PREFIX", _token, False) or (
            cls.nats_subject_prefix
        )
        settings = cls(
            source=source,
            mode=mode,
            database_url=database_url or "",
            nats_url=nats_url or "",
            owner_database_url=owner_database_url,
            public_url=r.get("PUBLIC_URL", _public_url, False) or cls.public_url,
            smtp_url=r.get("SMTP_URL", _url("smtp", "smtps"), False),
            admin_token=r.get("ADMIN_TOKEN", _secret(16), False),
            secret_key=r.get("SECRET_KEY", _secret(32), needs_secrets),
            data_dir=Path(r.get("DATA_DIR", _non_empty, False) or cls.data_dir),
            nats_stream=nats_stream,
            nats_subject_prefix=nats_subject_prefix,
            registration_ttl=r.get("REGISTRATION_TTL", _seconds(60, 30 * 86_400), False)
            or cls.registration_ttl,
            otp_ttl=r.get("OTP_TTL", _seconds(30, 3_600), False) or cls.otp_ttl,
            access_token_ttl=r.get("ACCESS_TOKEN_TTL", _seconds(30, 86_400), False)
            or cls.access_token_ttl,
            scopes=r.get("SCOPES", _scopes, False) or cls.scopes,
            pre_claim_scopes=r.get("PRE_CLAIM_SCOPES", _scopes, False) or cls.pre_claim_scopes,
            post_claim_scopes=r.get("POST_CLAIM_SCOPES", _scopes, False) or cls.post_claim_scopes,
            rate_limits=r.get("RATE_LIMITS", _rate_limits, False) or cls.rate_limits,
            rate_limit_failure=r.get("RATE_LIMIT_FAILURE", _choice("open", "closed"), False)  # type: ignore[arg-type]
            or "open",
            resource_url=r.get("RESOURCE_URL", _resource_url, False),
            resource_name=r.get("RESOURCE_NAME", _display_name, False) or cls.resource_name,
            resource_logo_uri=r.get("RESOURCE_LOGO_URI", _link, False),
            flows=r.get("FLOWS", _subset("flow", FLOWS), False) or cls.flows,
            credential_types=r.get("CREDENTIAL_TYPES", _subset("type", CREDENTIAL_TYPES), False)
            or cls.credential_types,
            claim_link_ttl=r.get("CLAIM_LINK_TTL", _seconds(60, 86_400), False)
            or cls.claim_link_ttl,
            otp_max_misses=r.get("OTP_MAX_MISSES", _count(1, 100), False) or cls.otp_max_misses,
            otp_max_mints=r.get("OTP_MAX_MINTS", _count(1, 1_000), False) or cls.otp_max_mints,
            claim_max_misses=r.get("CLAIM_MAX_MISSES", _count(1, 10_000), False)
            or cls.claim_max_misses,
            doors=r.get("DOORS", _subset("door", DOORS), False) or cls.doors,
            v06_profile=r.get("V06_PROFILE", _choice(*V06_PROFILES), False)  # type: ignore[arg-type]
            or cls.v06_profile,
            assertion_ttl=r.get("ASSERTION_TTL", _seconds(60, 86_400), False) or cls.assertion_ttl,
            claim_poll_interval=r.get("CLAIM_POLL_INTERVAL", _seconds(1, 60), False)
            or cls.claim_poll_interval,
            claim_deliveries=r.get("CLAIM_DELIVERIES", _count(1, 100), False)
            or cls.claim_deliveries,
            claim_delivery_window=r.get("CLAIM_DELIVERY_WINDOW", _seconds(60, 86_400), False)
            or cls.claim_delivery_window,
            sign_in=r.get("SIGN_IN", _subset("sign-in method", SIGN_IN_METHODS), False)
            or cls.sign_in,
            sign_in_link_ttl=r.get("SIGN_IN_LINK_TTL", _seconds(60, 3_600), False)
            or cls.sign_in_link_ttl,
            session_ttl=r.get("SESSION_TTL", _seconds(300, 30 * 86_400), False) or cls.session_ttl,
            oidc_issuer=r.get("OIDC_ISSUER", _oidc_issuer, False),
            oidc_client_id=r.get("OIDC_CLIENT_ID", _client_id, False),
            oidc_client_secret=r.get("OIDC_CLIENT_SECRET", _non_empty, False),
            oidc_name=r.get("OIDC_NAME", _display_name, False),
            oidc_scopes=r.get("OIDC_SCOPES", _oidc_scopes, False) or cls.oidc_scopes,
            contact_url=r.get("CONTACT_URL", _contact, False),
            terms_url=r.get("TERMS_URL", _link, False),
            privacy_url=r.get("PRIVACY_URL", _link, False),
            jwks_allow_loopback_http=_default(
                r.get("JWKS_ALLOW_LOOPBACK_HTTP", _flag, False), mode == "dev"
            ),
            log_format=r.get("LOG_FORMAT", _choice("auto", "console", "json"), False) or "auto",  # type: ignore[arg-type]
            log_level=r.get("LOG_LEVEL", _choice("debug", "info", "warning", "error"), False)
            or cls.log_level,
            checkpoint_every=r.get("CHECKPOINT_EVERY", _count(1, 1_000_000), False)
            or cls.checkpoint_every,
            checkpoint_minutes=r.get("CHECKPOINT_MINUTES", _count(1, 1_440), False)
            or cls.checkpoint_minutes,
            trusted_proxies=r.get("TRUSTED_PROXIES", _networks, False) or cls.trusted_proxies,
            http_server=r.get("HTTP_SERVER", _choice("granian", "uvicorn"), False)  # type: ignore[arg-type]
            or cls.http_server,
            http_head_timeout=r.get("HTTP_HEAD_TIMEOUT", _seconds(1, 300), False)
            or cls.http_head_timeout,
            write_hold_ms=r.get("WRITE_HOLD_MS", _count(0, 50), False),
            outbound_allow=_default(
                r.get("OUTBOUND_ALLOW", parse_allow, False), LOOPBACK if mode == "dev" else ()
            ),
            checkpoint_stream=r.get("CHECKPOINT_STREAM", _token, False)
            or f"{nats_stream}_CHECKPOINTS",
            checkpoint_subject=r.get("CHECKPOINT_SUBJECT", _token, False)
            or f"{nats_subject_prefix}-checkpoints",
            audit_keys=r.get("AUDIT_KEYS", _jwks_source, False),
        )
        if settings.checkpoint_stream == settings.nats_stream:
            raise ConfigError(
                f"{PREFIX}CHECKPOINT_STREAM: must differ from {PREFIX}NATS_STREAM "
                "(checkpoints have a stream of their own, which refuses deletes and purges)"
            )
        for name in ("PRE_CLAIM_SCOPES", "POST_CLAIM_SCOPES"):
            stage = (
                settings.pre_claim_scopes if name.startswith("PRE") else settings.post_claim_scopes
            )
            unknown = sorted(set(stage) - set(settings.scopes))
            if unknown:
                raise ConfigError(f"{PREFIX}{name}: {' '.join(unknown)} not in {PREFIX}SCOPES")
        if "anonymous" in settings.flows and "api_key" not in settings.credential_types:
            raise ConfigError(
                f"{PREFIX}CREDENTIAL_TYPES: the anonymous flow needs api_key "
                f"(add it, or drop anonymous from {PREFIX}FLOWS)"
            )
        _check_oidc(settings)
        unknown = sorted(set(from_file) - r.asked)
        if unknown:
            names = ", ".join(n.removeprefix(PREFIX).lower() for n in unknown)
            raise ConfigError(f"{PREFIX}CONFIG: unknown setting(s) in the file: {names}")
        return settings


# Families the tests, benchmarks and fuzzer read (never the service): any name in them is known.
_OTHER_FAMILIES = ("TEST_", "BENCH_", "FUZZ_")


@dataclass(frozen=True)
class UnknownVariable:
    """An `AUTHLEDGER_*` variable nothing reads (ignored), and the known name closest to it."""

    name: str
    closest: str | None

    def line(self) -> str:
        hint = f"did you mean {self.closest}?" if self.closest else "no known variable is close"
        return f"{self.name}: unknown variable, ignored ({hint})"


def known_variables() -> frozenset[str]:
    """Every variable Settings reads (one per field), and AUTHLEDGER_CONFIG."""
    own = (f.name for f in fields(Settings) if f.name not in ("source", "mode"))
    return frozenset({PREFIX + "CONFIG", *(PREFIX + name.upper() for name in own)})


def unknown_variables(env: Mapping[str, str]) -> list[UnknownVariable]:
    """The `AUTHLEDGER_*` names in `env` that no part of authledger reads, sorted."""
    known = known_variables()
    others = tuple(PREFIX + family for family in _OTHER_FAMILIES)
    bare = sorted(name.removeprefix(PREFIX) for name in known)  # the shared prefix is no likeness
    out = []
    for name in sorted(env):
        if name.startswith(PREFIX) and name not in known and not name.startswith(others):
            close = difflib.get_close_matches(name.removeprefix(PREFIX), bare, n=1)
            out.append(UnknownVariable(name, PREFIX + close[0] if close else None))
    return out


def _config_file(path: str | None) -> dict[str, str]:
    """The file's settings as the variables they stand for (lists joined by spaces)."""
    if path is None or not path.strip():
        return {}
    try:
        with open(path.strip(), "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{PREFIX}CONFIG: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{PREFIX}CONFIG: {path} is not valid TOML: {exc}") from None
    out: dict[str, str] = {}
    for key, value in document.items():
        name = PREFIX + key.upper()
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, int | str):
            out[name] = str(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[name] = " ".join(value)
        else:
            raise ConfigError(f"{PREFIX}CONFIG: {key} must be a string, a number, a boolean "
                              "or a list of strings")  # fmt: skip
    return out


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.asked: set[str] = set()

    def get(self, name: str, parse: Callable[[str], T], required: bool) -> T | None:
        self.asked.add(PREFIX + name)
        raw = self._env.get(PREFIX + name)
        if raw is None or raw.strip() == "":
            if required:
                raise ConfigError(f"{PREFIX}{name}: required but not set")
            return None
        try:
            return parse(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}{name}: {exc}") from None


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not (parts.netloc or parts.query):
            raise ValueError(f"expected a {'|'.join(schemes)}:// URL, got {raw!r}")
        return raw

    return parse


def _public_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s):// URL, got {raw!r}")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    return raw.rstrip("/")


def _resource_url(raw: str) -> str:
    """The API's resource identifier (RFC 9728), kept exactly as given: `/api/` stays."""
    _public_url(raw)
    if any(c in urlsplit(raw).path for c in "{}% "):
        raise ValueError("the path must be plain: no '{', '}', '%' or spaces")
    return raw


def _link(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s):// URL, got {raw!r}")
    return raw


def _min_length(n: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if len(raw) < n:
            raise ValueError(f"must be at least {n} characters")
        return raw

    return parse


# The examples' placeholders (compose.yaml): a deployment that kept one has a secret anybody
# can read in the repository (security issue 12, finding 9).
_PLACEHOLDER_PREFIXES = ("change-me", "changeme")


def _secret(n: int) -> Callable[[str], str]:
    long_enough = _min_length(n)

    def parse(raw: str) -> str:
        if raw.strip().lower().startswith(_PLACEHOLDER_PREFIXES):
            raise ValueError(
                "is the example's placeholder; set a secret of your own, e.g. the output of "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return long_enough(raw)

    return parse


def check_secret_key(raw: str) -> str:
    """A value fit for AUTHLEDGER_SECRET_KEY (long enough, no placeholder); ValueError if not."""
    return _secret(32)(raw.strip())


def _non_empty(raw: str) -> str:
    return raw


def _token(raw: str) -> str:
    if not raw.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"letters, digits, '-' and '_' only, got {raw!r}")
    return raw


def _seconds(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ValueError(f"whole seconds between {low} and {high}, got {raw!r}")
        return int(raw)

    return parse


def _scopes(raw: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(raw.split()))
    for scope in scopes:
        if not all(c.isalnum() or c in "._:-/" for c in scope):
            raise ValueError(f"scope {scope!r} has characters outside [A-Za-z0-9._:/-]")
    return scopes


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ValueError(f"a whole number between {low} and {high}, got {raw!r}")
        return int(raw)

    return parse


def _subset(kind: str, options: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """Space-separated names from `options`, returned in the order of `options`."""

    def parse(raw: str) -> tuple[str, ...]:
        given = raw.lower().split()
        unknown = [name for name in given if name not in options]
        if unknown:
            raise ValueError(f"unknown {kind} {unknown[0]!r}; choose from {' '.join(options)}")
        return tuple(name for name in options if name in given)

    return parse


def _display_name(raw: str) -> str:
    if len(raw) > 100 or not raw.isprintable():
        raise ValueError("at most 100 printable characters")
    return raw


def _contact(raw: str) -> str:
    if raw.startswith("mailto:") and "@" in raw:
        return raw
    try:
        return _link(raw)
    except ValueError:
        raise ValueError(f"expected an http(s):// or mailto: URL, got {raw!r}") from None


def _jwks_source(raw: str) -> str:
    """A JWKS to pin: an http(s) URL, or a readable file."""
    if raw.startswith(("http://", "https://")):
        return _link(raw)
    if not Path(raw).is_file():
        raise ValueError(f"a JWKS file or an http(s):// URL, got {raw!r}")
    return raw


def _rate_limits(raw: str) -> str:
    if raw in ("on", "off"):
        return raw
    if not Path(raw).is_file():
        raise ValueError(f"'on', 'off' or a readable file of limits, got {raw!r}")
    return raw


def _networks(raw: str) -> tuple[str, ...]:
    """Comma- or space-separated CIDRs (a bare address is its /32 or /128), normalised, with
    duplicates dropped."""
    networks: list[str] = []
    for item in raw.replace(",", " ").split():
        try:
            networks.append(str(ipaddress.ip_network(item, strict=True)))
        except ValueError:
            raise ValueError(
                f"{item!r} is not a network (a CIDR such as 10.0.0.0/8 or fd00::/8, "
                "without host bits)"
            ) from None
    return tuple(dict.fromkeys(networks))


def _oidc_issuer(raw: str) -> str:
    """The provider's issuer, kept exactly (its ID tokens' `iss` must equal it): an https URL,
    or http on a loopback host (tests and dev; also needs JWKS_ALLOW_LOOPBACK_HTTP)."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an https:// URL, got {raw!r}")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise ValueError("must be https (plain http only on 127.0.0.1, ::1 or localhost)")
    return raw


_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _client_id(raw: str) -> str:
    if len(raw) > 255 or not raw.isprintable() or " " in raw:
        raise ValueError("at most 255 printable characters, no spaces")
    return raw


def _oidc_scopes(raw: str) -> tuple[str, ...]:
    scopes = _scopes(raw)
    if "openid" not in scopes:
        raise ValueError("must include openid")
    return scopes


def _check_oidc(settings: Settings) -> None:
    """OIDC sign-in needs its provider; the provider's settings go together."""
    if "oidc" in settings.sign_in and (
        settings.oidc_issuer is None or settings.oidc_client_id is None
    ):
        raise ConfigError(
            f"{PREFIX}SIGN_IN: oidc needs {PREFIX}OIDC_ISSUER and {PREFIX}OIDC_CLIENT_ID"
        )
    others = (settings.oidc_client_id, settings.oidc_client_secret, settings.oidc_name)
    if settings.oidc_issuer is None and any(value is not None for value in others):
        raise ConfigError(f"{PREFIX}OIDC_ISSUER: required when the other OIDC_* settings are set")
    if settings.oidc_issuer is not None and settings.oidc_client_id is None:
        raise ConfigError(f"{PREFIX}OIDC_CLIENT_ID: required with {PREFIX}OIDC_ISSUER")
    issuer = settings.oidc_issuer
    if issuer is not None and issuer.startswith("http:") and not settings.jwks_allow_loopback_http:
        raise ConfigError(
            f"{PREFIX}OIDC_ISSUER: plain http needs {PREFIX}JWKS_ALLOW_LOOPBACK_HTTP=true "
            "(dev and tests only)"
        )


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError(f"one of {', '.join(options)}, got {raw!r}")
        return raw.lower()

    return parse


def _flag(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _default(value: T | None, default: T) -> T:
    return default if value is None else value

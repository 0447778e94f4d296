"""Settings from AUTHLEDGER_* variables, and how the CLI reports a bad one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.cli.main import main
from service.settings import ConfigError, Settings, known_variables, unknown_variables

GOOD = {
    "AUTHLEDGER_DATABASE_URL": "postgresql://app@db.internal:5432/authledger",
    "AUTHLEDGER_NATS_URL": "nats://nats.internal:4222",
    "AUTHLEDGER_ADMIN_TOKEN": "a" * 24,
    "AUTHLEDGER_SECRET_KEY": "s" * 40,
}

BAD_VALUES = [
    ("DATABASE_URL", "mysql://db/x"),
    ("DATABASE_URL", "not a url"),
    ("NATS_URL", "http://nats:4222"),
    ("PUBLIC_URL", "ftp://example.com"),
    ("PUBLIC_URL", "https://example.com/?next=1"),
    ("SMTP_URL", "http://mail:25"),
    ("ADMIN_TOKEN", "short"),
    ("SECRET_KEY", "only-twenty-chars-xx"),
    ("NATS_STREAM", "AUTH.LEDGER"),
    ("NATS_SUBJECT_PREFIX", "auth ledger"),
    ("REGISTRATION_TTL", "59"),
    ("REGISTRATION_TTL", "1d"),
    ("OTP_TTL", "3601"),
    ("ACCESS_TOKEN_TTL", "-5"),
    ("SCOPES", "api.read api$write"),
    ("PRE_CLAIM_SCOPES", "api.admin"),
    ("POST_CLAIM_SCOPES", "api.read api.delete"),
    ("RATE_LIMITS", "/no/such/limits.toml"),
    ("LOG_FORMAT", "xml"),
    ("LOG_LEVEL", "loud"),
    ("TRUSTED_PROXIES", "10.0.0.0/8 10.0.0.1/8"),
    ("OWNER_DATABASE_URL", "mysql://db/x"),
    ("OIDC_ISSUER", "ftp://idp.example.com"),
    ("OIDC_ISSUER", "http://idp.example.com"),  # plain http only on loopback
    ("OIDC_ISSUER", "https://idp.example.com/?tenant=a"),
    ("OIDC_CLIENT_ID", "two words"),
    ("OIDC_SCOPES", "email profile"),  # no openid
    ("OIDC_NAME", "Acme\tSSO"),
    ("WRITE_HOLD_MS", "51"),
    ("WRITE_HOLD_MS", "0.5"),
    ("HTTP_HEAD_TIMEOUT", "0"),
    ("HTTP_HEAD_TIMEOUT", "301"),
    ("HTTP_SERVER", "hypercorn"),
]


def _one_line_naming(exc: ConfigError, name: str) -> None:
    message = str(exc)
    assert message.startswith(f"AUTHLEDGER_{name}: ")
    assert "\n" not in message


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_each_bad_value_stops_with_one_line_naming_the_variable(name: str, value: str) -> None:
    """Every variable's bad value raises a one-line ConfigError that starts with its name."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**GOOD, f"AUTHLEDGER_{name}": value}, "serve")
    _one_line_naming(caught.value, name)


@pytest.mark.parametrize(
    ("mode", "missing"),
    [
        ("serve", "DATABASE_URL"),
        ("serve", "NATS_URL"),
        ("serve", "SECRET_KEY"),
        ("worker", "DATABASE_URL"),
        ("worker", "NATS_URL"),
        ("migrate", "DATABASE_URL"),
    ],
)
def test_missing_required_variable_is_named(mode: str, missing: str) -> None:
    """Each mode names the first variable it needs but was not given."""
    env = {k: v for k, v in GOOD.items() if k != f"AUTHLEDGER_{missing}"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env, mode)  # type: ignore[arg-type]
    _one_line_naming(caught.value, missing)
    assert "required" in str(caught.value)


def test_serve_needs_no_admin_token() -> None:
    """AUTHLEDGER_ADMIN_TOKEN is a deprecated bootstrap (security finding 2): optional."""
    env = {k: v for k, v in GOOD.items() if k != "AUTHLEDGER_ADMIN_TOKEN"}
    assert Settings.from_env(env, "serve").admin_token is None


OWNER = "postgresql://owner@db.internal:5432/authledger"


def test_migrate_and_replay_connect_as_the_owner_when_one_is_given() -> None:
    """migrate and replay use AUTHLEDGER_OWNER_DATABASE_URL (then need no other URL); without
    it, the single AUTHLEDGER_DATABASE_URL of earlier releases still does for everything."""
    for mode in ("migrate", "replay"):
        alone = Settings.from_env({"AUTHLEDGER_OWNER_DATABASE_URL": OWNER}, mode)
        assert (alone.owner_url, alone.owner_variable) == (OWNER, "AUTHLEDGER_OWNER_DATABASE_URL")
    both = Settings.from_env({**GOOD, "AUTHLEDGER_OWNER_DATABASE_URL": OWNER}, "serve")
    assert (both.database_url, both.owner_url) == (GOOD["AUTHLEDGER_DATABASE_URL"], OWNER)
    single = Settings.from_env(GOOD, "migrate")
    assert single.owner_url == GOOD["AUTHLEDGER_DATABASE_URL"]
    assert single.owner_variable == "AUTHLEDGER_DATABASE_URL"
    with pytest.raises(ConfigError) as caught:  # serve never falls back to the owner's URL
        Settings.from_env(
            {**{k: v for k, v in GOOD.items() if "DATABASE" not in k},
             "AUTHLEDGER_OWNER_DATABASE_URL": OWNER}, "serve"
        )  # fmt: skip
    _one_line_naming(caught.value, "DATABASE_URL")


def test_blank_value_counts_as_missing() -> None:
    """A variable set to whitespace is treated as unset, so a required one is reported."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**GOOD, "AUTHLEDGER_DATABASE_URL": "  "}, "serve")
    _one_line_naming(caught.value, "DATABASE_URL")


def test_defaults_when_only_required_values_are_given() -> None:
    """Optional settings take their documented defaults."""
    settings = Settings.from_env(GOOD, "serve")
    assert settings.database_url == GOOD["AUTHLEDGER_DATABASE_URL"]
    assert settings.nats_url == GOOD["AUTHLEDGER_NATS_URL"]
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.smtp_url is None
    assert settings.data_dir == Path(".authledger")
    assert (settings.nats_stream, settings.nats_subject_prefix) == ("AUTHLEDGER", "authledger")
    assert (settings.registration_ttl, settings.otp_ttl, settings.access_token_ttl) == (
        86_400,
        600,
        3_600,
    )
    assert settings.scopes == ("api.read", "api.write")
    assert settings.pre_claim_scopes == ("api.read",)
    assert settings.post_claim_scopes == ("api.read", "api.write")
    assert settings.rate_limits == "on"
    assert (settings.log_format, settings.log_level) == ("auto", "info")
    assert settings.write_hold_ms is None  # the writer's own GATHER_WAIT
    assert (settings.http_server, settings.http_head_timeout) == ("uvicorn", 30)


def test_a_write_hold_of_zero_is_kept() -> None:
    """0 means never hold (not "unset, take the default")."""
    assert Settings.from_env({**GOOD, "AUTHLEDGER_WRITE_HOLD_MS": "0"}, "serve").write_hold_ms == 0


def test_dev_mode_needs_no_services_or_secrets() -> None:
    """`dev` starts with nothing set: embedded services and generated secrets fill in."""
    settings = Settings.from_env({}, "dev")
    assert (settings.database_url, settings.nats_url) == ("", "")
    assert settings.admin_token is None
    assert settings.secret_key is None


def test_dev_mode_still_checks_values_that_are_given() -> None:
    """`dev` tolerates missing services but not malformed ones."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AUTHLEDGER_NATS_URL": "localhost:4222"}, "dev")
    _one_line_naming(caught.value, "NATS_URL")


def test_worker_and_migrate_need_fewer_variables() -> None:
    """Workers need no HTTP secrets; migrate needs only the database."""
    database = {"AUTHLEDGER_DATABASE_URL": GOOD["AUTHLEDGER_DATABASE_URL"]}
    worker = Settings.from_env({**database, "AUTHLEDGER_NATS_URL": "nats://n:4222"}, "worker")
    assert worker.admin_token is None
    assert Settings.from_env(database, "migrate").nats_url == ""


def test_values_are_normalised(tmp_path: Path) -> None:
    """Trailing slashes, duplicate scopes and letter case are tidied; a limits file is kept."""
    limits = tmp_path / "limits.toml"
    limits.write_text("register = '10/minute'\n")
    settings = Settings.from_env(
        {
            **GOOD,
            "AUTHLEDGER_PUBLIC_URL": "https://auth.example.com/",
            "AUTHLEDGER_SCOPES": "api.read api.write api.read files:read",
            "AUTHLEDGER_PRE_CLAIM_SCOPES": "files:read",
            "AUTHLEDGER_LOG_LEVEL": "DEBUG",
            "AUTHLEDGER_LOG_FORMAT": "Json",
            "AUTHLEDGER_RATE_LIMITS": str(limits),
            "AUTHLEDGER_OTP_TTL": " 120 ",
        },
        "serve",
    )
    assert settings.public_url == "https://auth.example.com"
    assert settings.scopes == ("api.read", "api.write", "files:read")
    assert settings.pre_claim_scopes == ("files:read",)
    assert (settings.log_level, settings.log_format) == ("debug", "json")
    assert settings.rate_limits == str(limits)
    assert settings.otp_ttl == 120


def test_claim_stage_scopes_must_be_offered_scopes() -> None:
    """Pre- and post-claim scopes must be drawn from AUTHLEDGER_SCOPES; the extras are named."""
    env = {
        **GOOD,
        "AUTHLEDGER_SCOPES": "a b",
        "AUTHLEDGER_PRE_CLAIM_SCOPES": "a",
        "AUTHLEDGER_POST_CLAIM_SCOPES": "a c d",
    }
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env, "serve")
    assert str(caught.value) == "AUTHLEDGER_POST_CLAIM_SCOPES: c d not in AUTHLEDGER_SCOPES"
    with pytest.raises(ConfigError) as pre:
        Settings.from_env({**GOOD, "AUTHLEDGER_SCOPES": "a b"}, "serve")
    _one_line_naming(pre.value, "PRE_CLAIM_SCOPES")  # default api.read is not offered


@pytest.mark.parametrize(("name", "value"), BAD_VALUES[::3])
def test_cli_prints_one_line_and_exits_2(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`authledger serve` with a bad variable prints only its message and returns 2."""
    for key, good in GOOD.items():
        monkeypatch.setenv(key, good)
    monkeypatch.setenv(f"AUTHLEDGER_{name}", value)
    assert main(["serve"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"AUTHLEDGER_{name}: ")


def test_a_config_file_gives_settings_and_the_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "authledger.toml"
    config.write_text(
        'resource_name = "Acme API"\n'
        "registration_ttl = 3600\n"
        'scopes = ["api.read", "api.write", "api.admin"]\n'
        'post_claim_scopes = "api.read api.write"\n'
        "jwks_allow_loopback_http = true\n"
        'OTP_TTL = "120"\n'
    )
    settings = Settings.from_env(
        {**GOOD, "AUTHLEDGER_CONFIG": str(config), "AUTHLEDGER_OTP_TTL": "300"}
    )
    assert settings.resource_name == "Acme API"
    assert settings.registration_ttl == 3600
    assert settings.scopes == ("api.read", "api.write", "api.admin")
    assert settings.jwks_allow_loopback_http is True
    assert settings.otp_ttl == 300  # the environment wins over the file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("registraton_ttl = 60\n", "unknown setting(s) in the file: registraton_ttl"),
        ("scopes = [1, 2]\n", "scopes must be a string"),
        ("scopes = \n", "is not valid TOML"),
        ("registration_ttl = 5\n", "AUTHLEDGER_REGISTRATION_TTL"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "authledger.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        Settings.from_env({**GOOD, "AUTHLEDGER_CONFIG": str(config)})
    assert "\n" not in str(raised.value)


def test_a_missing_config_file_is_named() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("AUTHLEDGER_CONFIG: cannot read /no/such.toml")
    ):
        Settings.from_env({**GOOD, "AUTHLEDGER_CONFIG": "/no/such.toml"})


def test_unknown_variables_name_the_closest_known_one() -> None:
    """A misspelt AUTHLEDGER_ name is reported with the variable it most likely meant."""
    env = {
        **GOOD,
        "AUTHLEDGER_REGISTRATON_TTL": "5",
        "AUTHLEDGER_DATABSE_URL": "postgresql://db/x",
        "AUTHLEDGER_QQQ": "1",
        "AUTHLEDGER_CONFIG": "/etc/authledger.toml",
        "AUTHLEDGER_DATA_DIR": "/var/lib/authledger",
        "AUTHLEDGER_TEST_BACKEND": "embedded",
        "AUTHLEDGER_TEST_DATABASE_URL": "postgresql://db/t",
        "AUTHLEDGER_BENCH_DATABASE_URL": "postgresql://db/b",
        "AUTHLEDGER_FUZZ_ADMIN_TOKEN": "x",
        "REGISTRATON_TTL": "5",
    }
    found = {(v.name, v.closest) for v in unknown_variables(env)}
    assert found == {
        ("AUTHLEDGER_DATABSE_URL", "AUTHLEDGER_DATABASE_URL"),
        ("AUTHLEDGER_REGISTRATON_TTL", "AUTHLEDGER_REGISTRATION_TTL"),
        ("AUTHLEDGER_QQQ", None),
    }
    [line] = [v.line() for v in unknown_variables({"AUTHLEDGER_OTP_TLL": "60"})]
    assert line == (
        "AUTHLEDGER_OTP_TLL: unknown variable, ignored (did you mean AUTHLEDGER_OTP_TTL?)"
    )


def test_every_setting_of_a_config_file_is_a_known_variable(tmp_path: Path) -> None:
    """Each known name but CONFIG is one Settings reads: a file naming them all has no unknown."""
    settable = sorted(known_variables() - {"AUTHLEDGER_CONFIG"})
    config = tmp_path / "authledger.toml"
    config.write_text("".join(f"{n.removeprefix('AUTHLEDGER_').lower()} = '?'\n" for n in settable))
    with pytest.raises(ConfigError) as caught:  # a value is bad, but no name is unknown
        Settings.from_env({**GOOD, "AUTHLEDGER_CONFIG": str(config)})
    assert "unknown setting" not in str(caught.value)
    config.write_text("registraton_ttl = 60\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        Settings.from_env({**GOOD, "AUTHLEDGER_CONFIG": str(config)})


def test_cli_names_a_misspelling_before_the_error_it_causes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt required variable: the hint line, then the one-line error, exit status 2."""
    for key, good in GOOD.items():
        monkeypatch.setenv(key, good)
    monkeypatch.delenv("AUTHLEDGER_DATABASE_URL")
    monkeypatch.setenv("AUTHLEDGER_DATABSE_URL", GOOD["AUTHLEDGER_DATABASE_URL"])
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "AUTHLEDGER_DATABSE_URL: unknown variable, ignored (did you mean AUTHLEDGER_DATABASE_URL?)",
        "AUTHLEDGER_DATABASE_URL: required but not set",
    ]


OIDC = {
    "AUTHLEDGER_OIDC_ISSUER": "https://login.example.com/tenant-1",
    "AUTHLEDGER_OIDC_CLIENT_ID": "authledger",
}


def test_oidc_sign_in_is_read_and_its_secret_never_printed() -> None:
    """The installation's OpenID Connect provider: issuer kept exactly, scopes with openid,
    an optional secret (a public client uses PKCE alone) that no repr shows."""
    settings = Settings.from_env(
        {**GOOD, **OIDC, "AUTHLEDGER_OIDC_CLIENT_SECRET": "very-secret-value",
         "AUTHLEDGER_OIDC_NAME": "Acme SSO", "AUTHLEDGER_SIGN_IN": "oidc email"},
        "serve",
    )  # fmt: skip
    assert settings.oidc_issuer == "https://login.example.com/tenant-1"
    assert (settings.oidc_client_id, settings.oidc_name) == ("authledger", "Acme SSO")
    assert settings.oidc_scopes == ("openid", "email")
    assert settings.sign_in == ("email", "oidc")
    assert settings.oidc_client_secret == "very-secret-value"
    assert "very-secret-value" not in repr(settings)
    public = Settings.from_env({**GOOD, **OIDC}, "serve")
    assert (public.oidc_client_secret, public.sign_in) == (None, ("email",))
    unset = Settings.from_env(GOOD, "serve")
    assert (unset.oidc_issuer, unset.oidc_client_id, unset.oidc_name) == (None, None, None)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AUTHLEDGER_SIGN_IN": "oidc"}, "SIGN_IN"),
        ({"AUTHLEDGER_OIDC_CLIENT_ID": "authledger"}, "OIDC_ISSUER"),
        ({"AUTHLEDGER_OIDC_CLIENT_SECRET": "s3cret"}, "OIDC_ISSUER"),
        ({"AUTHLEDGER_OIDC_ISSUER": "https://login.example.com"}, "OIDC_CLIENT_ID"),
        ({**OIDC, "AUTHLEDGER_OIDC_ISSUER": "http://127.0.0.1:9000"}, "OIDC_ISSUER"),
    ],
)
def test_oidc_settings_go_together(env: dict[str, str], named: str) -> None:
    """OIDC sign-in needs its provider, a provider needs its client id, and a plain-http
    loopback provider (tests, dev) needs JWKS_ALLOW_LOOPBACK_HTTP."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**GOOD, **env}, "serve")
    _one_line_naming(caught.value, named)
    loopback = {**OIDC, "AUTHLEDGER_OIDC_ISSUER": "http://127.0.0.1:9000",
                "AUTHLEDGER_JWKS_ALLOW_LOOPBACK_HTTP": "true"}  # fmt: skip
    assert Settings.from_env({**GOOD, **loopback}, "serve").oidc_issuer == "http://127.0.0.1:9000"

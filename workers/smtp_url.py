"""The mailer's SMTP URL (AUTHLEDGER_SMTP_URL), read into `aiosmtplib.send` options."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from service.observability.logging import redact_url

# `?tls=` in AUTHLEDGER_SMTP_URL: `starttls` (the default for smtp://) or `none`, the explicit
# opt-out for a local test sink (security issue 12, finding 9). smtps:// is implicit TLS.
TLS_OPTIONS = ("starttls", "none")


def smtp_options(url: str) -> dict[str, Any]:
    """`aiosmtplib.send` options for an SMTP URL; ValueError names what is wrong with it.

    - `smtp://[user:password@]host[:port]`: STARTTLS required (port 25 by default); a server
      that does not offer it gets no mail and no password.
    - `smtps://[user:password@]host[:port]`: implicit TLS (port 465 by default).
    - `smtp://host:port?tls=none`: plain text, for a local test sink only; no credentials.

    Certificates are always verified (a private CA: `SSL_CERT_FILE`).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"expected smtp://host[:port] or smtps://…, got {redact_url(url)!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"tls"})
    tls_values = query.get("tls", ["starttls"])
    if unknown or len(tls_values) != 1 or tls_values[0] not in TLS_OPTIONS:
        raise ValueError(f"the only query option is tls={'|'.join(TLS_OPTIONS)}")
    implicit = parts.scheme == "smtps"
    plain = tls_values[0] == "none"
    if implicit and plain:
        raise ValueError("smtps:// is TLS; tls=none goes with smtp:// only")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if plain and (user or password):
        raise ValueError("tls=none sends in clear text: it takes no user or password")
    return {
        "hostname": parts.hostname,
        "port": parts.port or (465 if implicit else 25),
        "use_tls": implicit,
        "start_tls": not (implicit or plain),  # required, never opportunistic
        "validate_certs": True,
        "username": user,
        "password": password,
    }

"""The mails: plain text and simple HTML, built into one MIME message.

The claim e-mail (spec §6.3) says an agent asks to act for the reader, names the address it was
sent to, gives the link to the claim page (`<public_url>/agent/auth/claim/view?token=<cvt_…>`),
the registration id and when the link stops working, and tells a reader who did not start
this to ignore it: the agent stays limited and unlinked. The sign-in e-mail (the v0.6 pages,
contract V3) gives the link that signs the reader in (`<public_url>/login/email?token=<lgt_…>`)
and when it stops working. Every value is HTML-escaped in the HTML part; there are no images,
no remote resources and no tracking of any kind.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote, urlsplit

from workers.mime import alternative

CLAIM_VIEW_PATH = "/agent/auth/claim/view"
SIGN_IN_PATH = "/login/email"
SUBJECT = "An AI agent asks to act for you"
SIGN_IN_SUBJECT = "Your sign-in link"


@dataclass(frozen=True, slots=True)
class ClaimMail:
    """What one claim e-mail says; holds the plain link token, so never log it."""

    attempt_id: str
    registration_id: str
    recipient: str
    link: str
    link_expires_at: datetime
    service_name: str = "authledger"

    def __repr__(self) -> str:  # keep the address and the token out of tracebacks and logs
        return f"ClaimMail(attempt_id={self.attempt_id!r})"


@dataclass(frozen=True, slots=True)
class SignInMail:
    """What one sign-in e-mail says; holds the plain link token, so never log it."""

    link_id: str  # sgn_…
    recipient: str
    link: str
    link_expires_at: datetime
    service_name: str = "authledger"

    def __repr__(self) -> str:
        return f"SignInMail(link_id={self.link_id!r})"


def claim_link(public_url: str, link_token: str) -> str:
    """`<public_url>/agent/auth/claim/view?token=<cvt_…>`."""
    return f"{public_url.rstrip('/')}{CLAIM_VIEW_PATH}?token={quote(link_token, safe='')}"


def sign_in_link(public_url: str, link_token: str) -> str:
    """`<public_url>/login/email?token=<lgt_…>`."""
    return f"{public_url.rstrip('/')}{SIGN_IN_PATH}?token={quote(link_token, safe='')}"


def sender_for(public_url: str) -> str:
    """`no-reply@<host of the public URL>` (`localhost` for an IP address or a bare name)."""
    host = urlsplit(public_url).hostname or "localhost"
    if "." not in host or host.replace(".", "").isdigit() or ":" in host:
        host = "localhost"
    return f"no-reply@{host}"


def message_id(attempt_id: str) -> str:
    """One Message-ID per attempt, so a receiver can drop a resent copy."""
    return f"<{attempt_id}@authledger>"


def _expiry(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_text(mail: ClaimMail) -> str:
    return (
        f"An AI agent asks to act for you at {mail.service_name}.\n"
        "\n"
        f"It gave this e-mail address, {mail.recipient}, as yours. If you want to let it, open\n"
        "this link and follow the steps on the page:\n"
        "\n"
        f"{mail.link}\n"
        "\n"
        f"Registration: {mail.registration_id}\n"
        f"The link works until {_expiry(mail.link_expires_at)}.\n"
        "\n"
        "If this was not you, ignore this e-mail: the agent stays limited and is not linked\n"
        "to you.\n"
    )


def render_html(mail: ClaimMail) -> str:
    e = html.escape
    link = e(mail.link, quote=True)
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{e(SUBJECT)}</title></head>
<body style="font-family: sans-serif; line-height: 1.5; color: #222; max-width: 36em;">
<p>An AI agent asks to act for you at <strong>{e(mail.service_name)}</strong>.</p>
<p>It gave this e-mail address, <strong>{e(mail.recipient)}</strong>, as yours.
If you want to let it, open the claim page and follow the steps there:</p>
<p><a href="{link}" style="display: inline-block; padding: 0.6em 1.2em; background: #1f5fbf;
color: #fff; text-decoration: none; border-radius: 4px;">Open the claim page</a></p>
<p style="font-size: 0.9em;">Or copy this link: <a href="{link}">{link}</a></p>
<p style="font-size: 0.9em;">Registration: <code>{e(mail.registration_id)}</code><br>
The link works until {e(_expiry(mail.link_expires_at))}.</p>
<p>If this was not you, ignore this e-mail: the agent stays limited and is not linked
to you.</p>
</body>
</html>
"""


def render_sign_in_text(mail: SignInMail) -> str:
    return (
        f"Someone asked to sign in at {mail.service_name} as {mail.recipient}.\n"
        "\n"
        "If it was you, open this link and press the button on the page:\n"
        "\n"
        f"{mail.link}\n"
        "\n"
        f"The link works once, until {_expiry(mail.link_expires_at)}.\n"
        "\n"
        "If this was not you, ignore this e-mail: nobody is signed in without the link.\n"
    )


def render_sign_in_html(mail: SignInMail) -> str:
    e = html.escape
    link = e(mail.link, quote=True)
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{e(SIGN_IN_SUBJECT)}</title></head>
<body style="font-family: sans-serif; line-height: 1.5; color: #222; max-width: 36em;">
<p>Someone asked to sign in at <strong>{e(mail.service_name)}</strong> as
<strong>{e(mail.recipient)}</strong>.</p>
<p>If it was you, open the link and press the button on the page:</p>
<p><a href="{link}" style="display: inline-block; padding: 0.6em 1.2em; background: #1f5fbf;
color: #fff; text-decoration: none; border-radius: 4px;">Sign in</a></p>
<p style="font-size: 0.9em;">Or copy this link: <a href="{link}">{link}</a></p>
<p style="font-size: 0.9em;">The link works once, until
{e(_expiry(mail.link_expires_at))}.</p>
<p>If this was not you, ignore this e-mail: nobody is signed in without the link.</p>
</body>
</html>
"""


def build_message(mail: ClaimMail | SignInMail, *, sender: str, now: datetime) -> bytes:
    """The MIME message (text and HTML alternatives, workers/mime.py) with a deterministic
    Message-ID: the attempt's `<cla_…@authledger>`, or the sign-in link's `<sgn_…@authledger>`.

    Raises ValueError when a header value holds a line break (say, in the recipient).
    """
    if isinstance(mail, SignInMail):
        subject, mid = SIGN_IN_SUBJECT, message_id(mail.link_id)
        text, page = render_sign_in_text(mail), render_sign_in_html(mail)
    else:
        subject, mid = SUBJECT, message_id(mail.attempt_id)
        text, page = render_text(mail), render_html(mail)
    headers = [
        ("From", sender),
        ("To", mail.recipient),
        ("Date", format_datetime(now.astimezone(UTC))),
        ("Subject", subject),
        ("Message-ID", mid),
        ("Auto-Submitted", "auto-generated"),
    ]
    return alternative(headers, text, page)

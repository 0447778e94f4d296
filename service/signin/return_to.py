"""Where a sign-in may send the person back to (contract V3 `return_to`): no open redirect.

Only our own claim page: a path starting `/claim?` or `/claim/`, at most 512 characters of
printable ASCII, with no `//` and no `\\` anywhere (browsers read `/\\evil.example` as another
host), no scheme or host, and no `.` or `..` segment in its path, written plainly or
percent-encoded (`/claim/../admin` would leave the claim page for another of our pages).
Anything else is refused, not rewritten.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MAX_RETURN_TO = 512
PREFIXES = ("/claim?", "/claim/")


def safe_return_to(value: object) -> str | None:
    """`value` when it is a place a sign-in may return to, else None."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_RETURN_TO:
        return None
    if not value.startswith(PREFIXES) or "//" in value or "\\" in value:
        return None
    if not all("\x21" <= char <= "\x7e" for char in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    segments = unquote(parts.path).split("/")
    return None if "." in segments or ".." in segments else value

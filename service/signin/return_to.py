"""Where a sign-in may send the person back to (contract V3 `return_to`): no open redirect.

Only our own claim page: a path starting `/claim?` or `/claim/`, at most 512 characters of
printable ASCII, with no `//` and no `\\` anywhere (browsers read `/\\evil.example` as another
host), and no scheme or host. Anything else is refused, not rewritten.
"""

from __future__ import annotations

from urllib.parse import urlsplit

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
    return value if not parts.scheme and not parts.netloc else None

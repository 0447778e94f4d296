"""workers/mime.py: the mailer's own MIME writer, read back by the standard library's parser."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.utils import formataddr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.mime import alternative

HEADERS = [("From", "a@example.net"), ("To", "b@example.net"), ("Subject", "Hello")]


def parsed(raw: bytes) -> tuple[str, str, dict[str, str]]:
    message = message_from_bytes(raw, policy=policy.default)
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    headers = {name: str(value) for name, value in message.items()}
    return str(text.get_content()), str(html.get_content()), headers


@given(st.text(), st.text())
def test_both_parts_read_back_as_written(text: str, html: str) -> None:
    """Any text, any line ends (base64 keeps them), any characters: the parser gets it back."""
    got_text, got_html, headers = parsed(alternative(HEADERS, text, html))
    assert (got_text, got_html) == (text, html)
    assert headers["Subject"] == "Hello"
    assert headers["MIME-Version"] == "1.0"


def test_lines_end_in_crlf_and_a_display_name_is_encoded() -> None:
    sender = formataddr(("Bänk ✓", "no-reply@example.net"), charset="utf-8")
    raw = alternative([("From", sender), *HEADERS[1:]], "hi\n", "<p>hi</p>")
    assert raw.isascii()  # the name went RFC 2047, the bodies base64
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert parsed(raw)[2]["From"] == "Bänk ✓ <no-reply@example.net>"


@pytest.mark.parametrize("value", ["x@example.net\r\nBcc: y@example.net", "x\nBcc: y", "x\r"])
def test_a_line_break_in_a_header_value_is_refused(value: str) -> None:
    """No value can add a header (a recipient with a line break would add a Bcc)."""
    with pytest.raises(ValueError, match="line break in the To header"):
        alternative([("From", "a@example.net"), ("To", value)], "t", "h")

"""structlog configuration: one output path for our loggers and the standard library's.

Console rendering when stderr is a terminal (or `log_format=console`), one JSON object per
line otherwise. A request id travels in contextvars (bound per request by `service.http.app`).
Values under secret-looking keys are masked, and so is the password part of any URL.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import structlog
import structlog.tracebacks
from structlog.typing import EventDict, Processor, WrappedLogger

from service.observability import access_log
from service.settings import Settings

REDACTED = "[redacted]"
_SECRET_KEYS = frozenset(
    {
        "authorization",
        "cookie",
        "set_cookie",
        "password",
        "secret",
        "token",
        "code",
        "otp",
        "one_time_code",
        "api_key",
        "client_secret",
        "secret_key",
        "private_key",
        "signing_key",
    }
)
_SECRET_SUFFIXES = ("_token", "_secret", "_password")
_QUIET = {"pgserver": logging.WARNING, "asyncio": logging.WARNING, "nats": logging.WARNING}


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit to print or log."""
    parts = urlsplit(url)
    if parts.password is None or parts.password == "":
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{parts.username}:{REDACTED}@{host}" if parts.username else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_secret_key(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_KEYS or lowered.endswith(_SECRET_SUFFIXES)


def drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """uvicorn passes an ANSI-coloured copy of each message as an extra; one copy is enough."""
    event_dict.pop("color_message", None)
    return event_dict


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask values under secret-looking keys and passwords inside URLs."""
    _redact_mapping(event_dict)
    return event_dict


def _redact_mapping(values: MutableMapping[str, Any]) -> None:
    for key, value in values.items():
        if key == "event":
            continue
        if is_secret_key(key) and value is not None:
            values[key] = REDACTED
        elif isinstance(value, str) and "://" in value and "@" in value:
            values[key] = redact_url(value)
        elif isinstance(value, dict):
            _redact_mapping(value)


def _renderer(log_format: str, stream: TextIO) -> Processor:
    if log_format == "auto":
        log_format = "console" if stream.isatty() else "json"
    if log_format == "console":
        # Tracebacks without local variables: a local may hold a token or a key.
        colors = stream.isatty()
        formatter = (
            structlog.dev.RichTracebackFormatter(
                show_locals=False, color_system="truecolor" if colors else "auto"
            )
            if importlib.util.find_spec("rich") is not None
            else structlog.dev.plain_traceback
        )
        return structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=formatter)
    return structlog.processors.JSONRenderer()


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Route structlog and standard-library logging through one handler on `stream`."""
    out = stream or sys.stderr
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    renderer = _renderer(settings.log_format, out)
    if isinstance(renderer, structlog.processors.JSONRenderer):
        final.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    final.append(renderer)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), drop_color_message, *shared],
        processors=final,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    json_lines = isinstance(renderer, structlog.processors.JSONRenderer)
    access_log.install(out if json_lines and level <= logging.INFO else None)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name, quiet in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.captureWarnings(True)

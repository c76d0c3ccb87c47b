"""Token redaction for every log record, exception text and URL that leaves a process."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

REDACTED: Final = "[REDACTED]"
# Discord bot tokens: base64 user id . timestamp . hmac (the protocol reference, section 1.1).
_TOKEN_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{18,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}")

_secrets: set[str] = set()


def add_secret(secret: str) -> None:
    """Register a value that must never be printed (a token, an admin secret)."""
    if secret and len(secret) >= 6:
        _secrets.add(secret)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _TOKEN_SHAPE.sub(REDACTED, text)


def scrub(record: logging.LogRecord) -> None:
    """Rewrite the record's fully formatted message, exception text and stack in place."""
    try:
        message = record.getMessage()
    except Exception:
        return  # a bad format string: logging reports it when a handler formats the record
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    cleaned = redact(message)
    if cleaned != message:
        record.msg = cleaned
        record.args = None
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install() -> None:
    """Redact every log record of this process as it is created, whichever handler later
    prints it: our own formatter redacts its whole line anyway, but a handler the bot adds
    (a file, a syslog, a third-party formatter) sees only records already scrubbed. Filters
    would not do: one on a logger misses records propagated from its children, one on a
    handler misses handlers added later."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        scrub(record)
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)

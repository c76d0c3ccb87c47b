"""Token redaction for every log record, exception text and URL that leaves a process."""

from __future__ import annotations

import logging
import re
from typing import Final

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


class RedactingFilter(logging.Filter):
    """Rewrites the fully formatted message (args and traceback included) of each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
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
        return True


def install(root: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of the root logger (filters on loggers do not see
    records propagated from child loggers; filters on handlers do)."""
    logger = root or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())

"""Structured logs never carry the token: one redaction pass, over the whole line."""

from __future__ import annotations

import logging
import sys

import pytest

from workers import redact
from workers.logsetup import KeyValueFormatter

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GAbcde.secretsecretsecretsecretsecret"


def record_with_exception(message: str) -> logging.LogRecord:
    try:
        raise RuntimeError(message)
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), exc_info)
    record.detail = f"token={TOKEN}"
    return record


@pytest.mark.parametrize("as_json", [False, True])
def test_token_inside_an_exception_message_never_appears_in_the_line(as_json: bool) -> None:
    redact.add_secret(TOKEN)
    line = KeyValueFormatter(as_json).format(record_with_exception(f"holding {TOKEN}"))
    assert TOKEN not in line
    assert redact.REDACTED in line
    assert "RuntimeError" in line


def test_token_in_an_extra_field_never_appears_in_the_line() -> None:
    redact.add_secret(TOKEN)
    line = KeyValueFormatter().format(record_with_exception("no secret here"))
    assert TOKEN not in line
    assert "detail=token=[REDACTED]" in line

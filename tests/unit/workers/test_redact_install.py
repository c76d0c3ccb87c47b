"""``redact.install`` scrubs every record as it is created, so a handler the bot adds itself
(with its own formatter, after logging was configured) never prints the token."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from workers import logsetup, redact

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.Gx1yZ2.abcdefghijklmnopqrstuvwxyz0123"
ADMIN = "admin-secret-value-42"


@pytest.fixture
def bot_handler() -> Iterator[io.StringIO]:
    """What a bot's own code might do: a plain handler on its logger, added late."""
    factory = logging.getLogRecordFactory()
    logsetup.configure("INFO")
    redact.add_secret(TOKEN)
    redact.add_secret(ADMIN)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    bot = logging.getLogger("some_bot")
    bot.addHandler(handler)
    try:
        yield out
    finally:
        bot.removeHandler(handler)
        logging.setLogRecordFactory(factory)


def test_a_token_in_log_arguments_is_redacted_for_a_handler_the_bot_added(
    bot_handler: io.StringIO,
) -> None:
    logging.getLogger("some_bot").warning("calling with Bot %s and %s", TOKEN, ADMIN)
    text = bot_handler.getvalue()
    assert TOKEN not in text and ADMIN not in text
    assert text.count(redact.REDACTED) == 2


def test_a_token_in_an_exception_is_redacted_for_a_handler_the_bot_added(
    bot_handler: io.StringIO,
) -> None:
    try:
        raise RuntimeError(f"failed holding {TOKEN}")
    except RuntimeError:
        logging.getLogger("some_bot").exception("handler failed")
    text = bot_handler.getvalue()
    assert "RuntimeError" in text
    assert TOKEN not in text


def test_a_token_in_a_stack_is_redacted(bot_handler: io.StringIO) -> None:
    def holding(secret: str) -> None:
        logging.getLogger("some_bot").warning("here", stack_info=True)

    # The stack shows this source line, and with it the literal token.
    holding("MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.Gx1yZ2.abcdefghijklmnopqrstuvwxyz0123")
    text = bot_handler.getvalue()
    assert "Stack (most recent call last)" in text
    assert TOKEN not in text


def test_a_bad_format_string_is_left_for_logging_to_report() -> None:
    # Raising here would raise in the bot's own log call; logging itself reports the
    # mistake when a handler formats the record.
    record = logging.LogRecord("some_bot", logging.WARNING, __file__, 1, "two %s %s", ("a",), None)
    redact.scrub(record)
    assert (record.msg, record.args) == ("two %s %s", ("a",))


def test_install_twice_scrubs_once() -> None:
    factory = logging.getLogRecordFactory()
    try:
        redact.install()
        installed = logging.getLogRecordFactory()
        redact.install()
        assert logging.getLogRecordFactory() is installed
    finally:
        logging.setLogRecordFactory(factory)

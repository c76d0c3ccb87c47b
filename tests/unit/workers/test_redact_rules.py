"""Secrets registered with ``workers.redact.add_secret`` never reach a log line. Each test
kills mutants of workers/redact.py that the other tests let through (`make mutate`): they
only ever exercised the token-shaped pattern, never a registered secret."""

from __future__ import annotations

import pytest

from workers import redact


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "_secrets", set())


def test_a_registered_secret_is_replaced_wherever_it_appears() -> None:
    redact.add_secret("hunter2-admin")
    assert redact.redact("a=hunter2-admin b=hunter2-admin.") == "a=[REDACTED] b=[REDACTED]."


def test_text_without_a_secret_is_left_alone() -> None:
    redact.add_secret("hunter2-admin")
    assert redact.redact("nothing to hide") == "nothing to hide"


def test_a_secret_of_six_characters_is_registered() -> None:
    redact.add_secret("s3cr3t")
    assert redact.redact("pw s3cr3t") == "pw [REDACTED]"


@pytest.mark.parametrize("short", ["", "abcde"])
def test_empty_or_shorter_secrets_are_not_registered(short: str) -> None:
    # five characters or fewer would blank out ordinary words in every log line
    redact.add_secret(short)
    assert redact.redact("abcdef ghi") == "abcdef ghi"

"""Helpers shared by the supervisor tests."""

from __future__ import annotations

import base64

import pytest


def make_token(bot_id: int = 123456789012345678) -> str:
    head = base64.urlsafe_b64encode(str(bot_id).encode()).decode().rstrip("=")
    return f"{head}.GxYz12.abcdefghijklmnopqrstuvwxyz012345"


class InstantClock:
    """A clock whose sleeps return at once and are recorded (for retry delays)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def token() -> str:
    return make_token()

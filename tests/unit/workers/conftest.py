"""Every shard in these tests checks its state changes strictly: an illegal transition
(``workers.shard.TRANSITIONS``) fails the test instead of being only logged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workers import shard


@pytest.fixture(autouse=True)
def strict_shard_transitions() -> Iterator[None]:
    shard.STRICT_TRANSITIONS = True
    yield
    shard.STRICT_TRANSITIONS = False

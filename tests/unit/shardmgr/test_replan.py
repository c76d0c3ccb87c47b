"""The shard count a 4011 (sharding required) re-plans to."""

from __future__ import annotations

import pytest

from shardmgr.plan import replan_total


@pytest.mark.parametrize(
    ("old_total", "recommended", "max_concurrency", "expected"),
    [
        # Discord recommends more: take it.
        (4, 8, 1, 8),
        # The recommendation is rounded up to full identify windows.
        (4, 9, 4, 12),
        # A stale recommendation (not above the old count) still grows by one window.
        (4, 4, 1, 5),
        (4, 2, 1, 5),
        (16, 16, 16, 32),
        # One more shard than before, rounded up to a full window.
        (10, 3, 4, 12),
    ],
)
def test_replan_total_after_4011(
    old_total: int, recommended: int, max_concurrency: int, expected: int
) -> None:
    assert replan_total(old_total, recommended, max_concurrency) == expected

"""A start checks the session start budget up front: the plan says how many shards identify
now and how many wait (and until when), and the first start leaves the reserve intact."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from shardmgr.plan import budget_shortfall
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, wait_fake

# 2026-12-07 12:00:00 UTC
NOON = float(calendar.timegm((2026, 12, 7, 12, 0, 0)))


@pytest.mark.parametrize(
    ("to_identify", "remaining", "reserve", "reset_after_s", "text"),
    [
        (40, 50, 10, 3600.0, None),
        (0, 0, 10, 3600.0, None),
        (
            64,
            50,
            10,
            3 * 3600.0 + 12 * 60,
            "session start budget: 50 left, 10 kept in reserve for restarts, so 40 of 64 "
            "shards identify now and 24 wait until it refills at 2026-12-07 15:12 UTC "
            "(in 3 h 12 min)",
        ),
        (
            1,
            5,
            10,
            90.0,
            "session start budget: 5 left, 10 kept in reserve for restarts, so 0 of 1 "
            "shard identify now and 1 wait until it refills at 2026-12-07 12:01 UTC (in 2 min)",
        ),
    ],
)
def test_budget_shortfall(
    to_identify: int, remaining: int, reserve: int, reset_after_s: float, text: str | None
) -> None:
    assert budget_shortfall(to_identify, remaining, reserve, reset_after_s, NOON) == text


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_64_shards_against_50_starts_and_a_reserve_of_10_identify_40(
    tmp_path: Path,
) -> None:
    fake = await FakeGatewayProc.start(
        shards=64,
        max_concurrency=16,
        event_rate=1.0,
        extra=("--session-start-total", "1000", "--session-start-remaining", "50"),
    )
    sup = await SupervisorProc.start(
        fake,
        tmp_path,
        "--shards", "64", "--shards-per-worker", "32",
        env={"SHARDMGR_IDENTIFY_RESERVE": "10"},
    )  # fmt: skip
    try:
        plan = [line.strip() for line in sup.stdout if "session start budget" in line]
        assert len(plan) == 1 and plan[0].startswith(
            "session start budget: 50 left, 10 kept in reserve for restarts, "
            "so 40 of 64 shards identify now and 24 wait until it refills at "
        ), sup.stdout
        doc = await sup.wait_status(
            lambda d: (
                d["supervisor"]["budget_exhausted"] is not None
                and d["supervisor"]["connected_shards"] == 40
            )
        )
        assert doc["supervisor"]["session_start_remaining"] == 10
        stats = await wait_fake(fake, lambda s: s["identifies"] >= 40)
        assert stats["identifies"] == 40 and stats["identify_violations"] == 0
    finally:
        await sup.close()
        await fake.close()

"""The reshard's decisions (``shardmgr.reshard``), as tables: the new shard count, whether
the budget pays for it, and what a new set's progress calls for."""

from __future__ import annotations

import pytest

from shardmgr.reshard import (
    NewSet,
    StoppedShard,
    Trigger,
    Verdict,
    budget_refusal,
    decide,
    slice_refusal,
    target_shards,
)

T = Trigger


@pytest.mark.parametrize(
    ("trigger", "current", "recommended", "mc", "largest", "expected"),
    [
        # a bigger recommendation, rounded up to whole identify windows
        (T.OPERATOR, 8, 16, 1, 0, 16),
        (T.RECOMMENDATION, 8, 13, 4, 0, 16),
        (T.RECOMMENDATION, 64, 128, 16, 0, 128),
        # not bigger than what runs: nothing to do (never fewer shards)
        (T.OPERATOR, 8, 8, 1, 0, None),
        (T.RECOMMENDATION, 16, 9, 1, 0, None),
        (T.RECOMMENDATION, 16, 13, 16, 0, None),
        # 4011: the recommendation, and at least one window more than now
        (T.SHARDING_REQUIRED, 8, 16, 1, 0, 16),
        (T.SHARDING_REQUIRED, 8, 8, 1, 0, 9),
        (T.SHARDING_REQUIRED, 16, 16, 16, 0, 32),
        # the largest shard past reshard_at_guilds (2000): enough to bring it back under
        (T.GUILDS, 8, 8, 1, 2400, 10),
        (T.GUILDS, 8, 8, 4, 2001, 12),
        (T.GUILDS, 8, 16, 1, 2100, 16),
        (T.GUILDS, 8, 8, 1, 1500, None),
    ],
)
def test_target_shards(
    trigger: Trigger, current: int, recommended: int, mc: int, largest: int, expected: int | None
) -> None:
    got = target_shards(
        trigger,
        current=current,
        recommended=recommended,
        max_concurrency=mc,
        largest_guilds=largest,
        at_guilds=2000,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("new", "remaining", "reserve", "refused"),
    [
        (16, 1000, 25, False),
        (16, 41, 25, False),  # exactly the new set plus the reserve
        (16, 40, 25, True),
        (128, 100, 0, True),
    ],
)
def test_budget_pays_for_the_new_set_plus_the_reserve(
    new: int, remaining: int, reserve: int, refused: bool
) -> None:
    reason = budget_refusal(new, remaining, reserve)
    assert (reason is not None) is refused
    if reason is not None:
        assert f"{remaining} left" in reason and f"{reserve} kept in reserve" in reason


def test_a_slice_refusal_explains_the_multi_host_procedure() -> None:
    text = slice_refusal(32)
    assert "--total-shards 32" in text and "every host" in text and "redis://" in text


def _stopped(shard: int, code: int | None, reason: str = "x") -> StoppedShard:
    return StoppedShard(shard, reason, code)


@pytest.mark.parametrize(
    ("new", "verdict", "reason_has"),
    [
        (NewSet(total=16, connected=0), Verdict.WAIT, None),
        (NewSet(total=16, connected=15, elapsed_s=100), Verdict.WAIT, None),
        (NewSet(total=16, connected=16), Verdict.SWITCH, None),
        # a 4011 in the new set: the new count is not enough either
        (NewSet(total=16, connected=15, stopped=[_stopped(3, 4011)]), Verdict.ABANDON, "4011"),
        # a 4011 is named first even when another shard stopped before it
        (
            NewSet(total=16, connected=14, stopped=[_stopped(1, 4004), _stopped(3, 4011)]),
            Verdict.ABANDON,
            "shard 3 closed with 4011",
        ),
        # the budget refused an identify (the shard stopped without a close code)
        (
            NewSet(total=16, connected=8, stopped=[_stopped(9, None, "budget exhausted")]),
            Verdict.ABANDON,
            "budget exhausted",
        ),
        (NewSet(total=16, connected=8, crashes=5, crash_limit=5), Verdict.ABANDON, "crashed 5"),
        (NewSet(total=16, connected=8, crashes=4, crash_limit=5), Verdict.WAIT, None),
        (
            NewSet(total=16, connected=8, elapsed_s=901, timeout_s=900),
            Verdict.ABANDON,
            "only 8 of 16",
        ),
        # ready just as the time runs out: switch
        (NewSet(total=16, connected=16, elapsed_s=901, timeout_s=900), Verdict.SWITCH, None),
    ],
)
def test_what_a_new_sets_progress_calls_for(
    new: NewSet, verdict: Verdict, reason_has: str | None
) -> None:
    step = decide(new)
    assert step.verdict is verdict
    if reason_has is None:
        assert step.reason is None
    else:
        assert step.reason is not None and reason_has in step.reason

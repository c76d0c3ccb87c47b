from __future__ import annotations

import pytest

from shardmgr.errors import UserError
from shardmgr.plan import (
    MAX_DEFAULT_GROUP,
    auto_shard_count,
    group_shards,
    host_slice,
    identify_windows,
    make_plan,
)


def test_auto_count_rounds_up_to_a_multiple_of_max_concurrency() -> None:
    assert auto_shard_count(9, 4) == 12
    assert auto_shard_count(16, 4) == 16
    assert auto_shard_count(1, 16) == 16
    assert auto_shard_count(5, 1) == 5


def test_auto_plan_uses_the_rounded_recommendation() -> None:
    plan = make_plan(shards="auto", recommended=9, max_concurrency=4, cpu_count=2)
    assert plan.total_shards == 12 and plan.shard_ids == list(range(12))


def test_explicit_count_overrides_the_recommendation() -> None:
    plan = make_plan(shards="5", recommended=9, max_concurrency=4, cpu_count=2)
    assert plan.total_shards == 5 and plan.shard_ids == list(range(5))


def test_shard_range_runs_only_that_slice_of_total_shards() -> None:
    plan = make_plan(
        shards="auto", recommended=2, max_concurrency=1, total_shards=16, slice_ids=range(4, 8)
    )
    assert plan.total_shards == 16 and plan.shard_ids == [4, 5, 6, 7]


def test_a_slice_may_be_any_set_of_shard_ids() -> None:
    plan = make_plan(
        shards="auto", recommended=2, max_concurrency=1, total_shards=16, slice_ids=[9, 0, 1]
    )
    assert plan.shard_ids == [0, 1, 9]


def test_shard_range_outside_total_is_a_user_error() -> None:
    with pytest.raises(UserError, match="--shard-ids 2-4 is outside --total-shards 4"):
        make_plan(
            shards="auto", recommended=2, max_concurrency=1, total_shards=4, slice_ids=[2, 3, 4]
        )


def test_default_group_size_keeps_every_core_busy() -> None:
    groups = group_shards(list(range(16)), cpu_count=4)
    assert [len(g) for g in groups] == [4, 4, 4, 4]


def test_default_group_size_is_capped() -> None:
    groups = group_shards(list(range(100)), cpu_count=2)
    assert max(len(g) for g in groups) == MAX_DEFAULT_GROUP


def test_shards_per_worker_sets_the_group_size() -> None:
    assert group_shards(list(range(7)), shards_per_worker=3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_workers_spreads_shards_evenly() -> None:
    assert group_shards(list(range(7)), workers=3) == [[0, 1, 2], [3, 4], [5, 6]]


def test_more_workers_than_shards_gives_one_shard_each() -> None:
    assert group_shards([0, 1], workers=5) == [[0], [1]]


def test_host_slices_cover_every_shard_once_and_evenly() -> None:
    for total in (1, 7, 16, 17):
        for hosts in (1, 2, 3, 5):
            if hosts > total:
                continue
            slices = [host_slice(total, i, hosts) for i in range(hosts)]
            assert [s for sl in slices for s in sl] == list(range(total))
            sizes = [len(sl) for sl in slices]
            assert max(sizes) - min(sizes) <= 1


def test_host_slice_rejects_an_index_outside_the_count() -> None:
    with pytest.raises(ValueError):
        host_slice(8, 2, 2)


def test_identify_windows_is_the_fullest_bucket() -> None:
    assert identify_windows(list(range(16)), 4) == 4
    assert identify_windows(list(range(17)), 4) == 5


def test_plan_description_lists_every_worker() -> None:
    plan = make_plan(shards="8", recommended=1, max_concurrency=2, shards_per_worker=4)
    text = plan.describe()
    assert "8 of 8 shards in 2 workers" in text
    assert "worker 0: shards 0-3" in text and "worker 1: shards 4-7" in text
    assert "4 identify windows" in text


def test_host_index_and_count_from_the_environment_pick_this_hosts_slice() -> None:
    from shardmgr.config import load_settings
    from shardmgr.discovery import GatewayInfo
    from shardmgr.identify import SessionStartLimit
    from shardmgr.start import plan_for

    settings = load_settings(
        {"total_shards": "10"}, env={"SHARDMGR_HOST_INDEX": "1", "SHARDMGR_HOST_COUNT": "3"}
    )
    limits = SessionStartLimit(total=1000, remaining=1000, reset_after_s=1.0, max_concurrency=1)
    plan = plan_for(settings, GatewayInfo(url="ws://x", recommended_shards=4, limits=limits))
    assert plan.total_shards == 10 and plan.shard_ids == [4, 5, 6]

from __future__ import annotations

import math
from pathlib import Path

import pytest

from shardmgr.errors import UserError
from shardmgr.plan import (
    MAX_DEFAULT_GROUP,
    auto_shard_count,
    group_shards,
    host_slice,
    identify_windows,
    make_plan,
    usable_cpus,
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


def _cgroup(tmp_path: Path, own: str, limits: dict[str, str]) -> tuple[Path, Path]:
    """A fake cgroup v2 tree: ``limits`` maps a directory (relative to the root) to its
    ``cpu.max``; the process lives in ``own``."""
    root = tmp_path / "cgroup"
    (root / own.lstrip("/")).mkdir(parents=True)
    for rel, text in limits.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel / "cpu.max").write_text(text + "\n")
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(f"0::{own}\n")
    return root, proc


def test_usable_cpus_is_the_affinity_mask_not_the_nodes_cores(tmp_path: Path) -> None:
    root, proc = _cgroup(tmp_path, "/", {"": "max 100000"})
    assert usable_cpus(lambda _pid: {3}, root, proc) == 1
    assert usable_cpus(lambda _pid: set(range(64)), root, proc) == 64


def test_usable_cpus_is_capped_by_the_tightest_cgroup_quota_rounded_up(tmp_path: Path) -> None:
    root, proc = _cgroup(
        tmp_path, "/kubepods/pod1/c1", {"kubepods/pod1": "150000 100000", "kubepods": "max 100000"}
    )
    assert usable_cpus(lambda _pid: set(range(64)), root, proc) == 2


def test_usable_cpus_without_cgroup_v2_is_the_affinity(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    assert usable_cpus(lambda _pid: {0, 1, 2}, tmp_path, missing) == 3


def test_plan_line_says_how_much_memory_the_plan_needs() -> None:
    plan = make_plan(shards="64", recommended=1, max_concurrency=16, workers=4)
    expected_mib = math.ceil((4 * 41 * 1024 * 1024 + 64 * 66 * 1024) / (1024 * 1024))
    assert plan.describe().splitlines()[0] == (
        "plan: 64 of 64 shards in 4 workers, max_concurrency 16 (4 identify windows to start), "
        f"about {expected_mib} MiB of memory"
    )
    assert expected_mib == 169


def test_plan_line_counts_in_the_singular_when_there_is_one() -> None:
    plan = make_plan(shards="1", recommended=1, max_concurrency=1)
    assert plan.describe().splitlines()[0] == (
        "plan: 1 of 1 shards in 1 worker, max_concurrency 1 (1 identify window to start), "
        "about 42 MiB of memory"
    )


def test_one_usable_cpu_plans_one_worker_under_taskset(tmp_path: Path) -> None:
    """`taskset -c 0 shardmgr start --shards 4` against a fake gateway plans one worker."""
    import shutil
    import subprocess
    import sys

    from tests.reliability.procs import SECRET_TOKEN, base_env, fake_gateway, new_marker

    taskset = shutil.which("taskset")
    if taskset is None:
        pytest.fail("taskset (util-linux) is needed for this test")
    marker = new_marker()
    with fake_gateway(tmp_path, new_marker(), shards=4) as (url, _):
        env = base_env(marker, DISCORD_TOKEN=SECRET_TOKEN)
        proc = subprocess.Popen(
            [taskset, "-c", "0", sys.executable, "-m", "shardmgr", "start", "--shards", "4",
             "--api-base", f"{url}/api/v10", "--http", "127.0.0.1:0",
             "--state-dir", str(tmp_path / "state")],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
        finally:
            proc.terminate()
            proc.wait(30)
    assert first.startswith("plan: 4 of 4 shards in 1 worker, "), first

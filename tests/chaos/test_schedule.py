"""The chaos fault schedule: seeded, bounded, and covering every fault kind."""

from __future__ import annotations

import itertools

from tests.chaos.schedule import PROCESS_KINDS, Fault, Kind, ScheduleConfig, make_schedule

CFG = ScheduleConfig(duration_s=45.0, shards=4, workers=2)


def test_same_seed_gives_the_same_schedule() -> None:
    assert make_schedule(11, CFG) == make_schedule(11, CFG)


def test_different_seeds_give_different_schedules() -> None:
    assert make_schedule(11, CFG) != make_schedule(12, CFG)


def test_faults_fall_between_warmup_and_quiet_tail_in_time_order() -> None:
    faults = make_schedule(3, CFG)
    times = [f.at_s for f in faults]
    assert times == sorted(times)
    assert all(CFG.warmup_s < t < CFG.duration_s - CFG.quiet_tail_s for t in times)


def test_a_short_run_covers_every_fault_kind() -> None:
    for seed in range(20):
        kinds = {f.kind for f in make_schedule(seed, CFG)}
        assert kinds == set(Kind), (seed, set(Kind) - kinds)


def test_a_long_run_repeats_every_kind() -> None:
    faults = make_schedule(5, ScheduleConfig(duration_s=300.0, shards=4, workers=2))
    counts = {k: sum(1 for f in faults if f.kind is k) for k in Kind}
    assert min(counts.values()) >= 3


def test_process_faults_keep_their_minimum_distance() -> None:
    for seed in range(20):
        times = [f.at_s for f in make_schedule(seed, CFG) if f.kind in PROCESS_KINDS]
        assert all(b - a >= CFG.process_gap_s for a, b in itertools.pairwise(times))


def test_targets_are_within_the_topology() -> None:
    for f in make_schedule(9, ScheduleConfig(duration_s=300.0, shards=3, workers=2)):
        if f.kind in (Kind.KILL9, Kind.SIGSTOP):
            assert f.worker is not None and 0 <= f.worker < 2
        elif f.kind not in (Kind.ROLLING_RESTART, Kind.REST_429, Kind.BAD_DEPLOY):
            assert f.shard_id is not None and 0 <= f.shard_id < 3


def test_stops_are_bounded() -> None:
    stops = [f for f in make_schedule(2, CFG) if f.kind is Kind.SIGSTOP]
    assert stops and all(0.5 <= f.duration_s <= CFG.max_stop_s for f in stops)


def test_sized_faults_stay_within_their_configured_ranges() -> None:
    faults = make_schedule(4, ScheduleConfig(duration_s=300.0, shards=4, workers=2))
    large = [f.size for f in faults if f.kind is Kind.LARGE_MESSAGE]
    endless = [f.size for f in faults if f.kind is Kind.NO_SUFFIX]
    assert large and all(256 << 10 <= n <= 1 << 20 for n in large)
    assert endless and all(64 << 10 <= n <= 256 << 10 for n in endless)


def test_gateway_requests_map_each_kind_to_the_control_api() -> None:
    assert Fault(1.0, Kind.CLOSE_4001, shard_id=2).gateway_request() == (
        "/_fake/faults",
        {"shard_id": 2, "kind": "close", "code": 4001},
    )
    assert Fault(1.0, Kind.INVALID_SESSION_FALSE, shard_id=0).gateway_request() == (
        "/_fake/faults",
        {"shard_id": 0, "kind": "invalid_session", "resumable": False},
    )
    assert Fault(1.0, Kind.REST_429).gateway_request() == (
        "/_fake/rest-faults",
        {"status": 429, "count": 2, "retry_after": 0.2},
    )
    assert Fault(1.0, Kind.LARGE_MESSAGE, shard_id=1, size=300_000).gateway_request() == (
        "/_fake/faults",
        {"shard_id": 1, "kind": "oversized", "bytes": 300_000},
    )
    assert Fault(1.0, Kind.KILL9, worker=0).gateway_request() is None


def test_rolling_restarts_use_both_http_and_sighup() -> None:
    faults = make_schedule(8, ScheduleConfig(duration_s=300.0, shards=4, workers=2))
    ways = {f.via_signal for f in faults if f.kind is Kind.ROLLING_RESTART}
    assert ways == {True, False}


def test_poison_events_aim_at_a_shard_and_die_both_ways() -> None:
    faults = make_schedule(5, ScheduleConfig(duration_s=300.0, shards=4, workers=2))
    poisons = [f for f in faults if f.kind is Kind.POISON_EVENT]
    assert Kind.POISON_EVENT in PROCESS_KINDS
    assert {f.hang for f in poisons} == {True, False}
    assert all(f.shard_id is not None and 0 <= f.shard_id < 4 for f in poisons)
    assert all(f.gateway_request() is None for f in poisons)
    assert poisons[0].describe().endswith(" hang" if poisons[0].hang else " crash")

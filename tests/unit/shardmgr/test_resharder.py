"""What ``Resharder.request`` answers (POST /reshard's 202 / 200 / 409 / 422) before any
worker starts: nothing to do, one already running, refused for a slice or for the budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from shardmgr.config import Settings
from shardmgr.discovery import GatewayInfo
from shardmgr.identify.limiter import SessionStartLimit
from shardmgr.plan import Plan, group_shards
from shardmgr.reshard import Trigger
from shardmgr.resharder import Answer, NewSetBooks, Planner, Resharder
from shardmgr.reshardmetrics import ReshardMetrics
from shardmgr.shardtable import ShardTable
from shardmgr.workerslot import WorkerSlot
from workers.clock import FakeClock


class _Limiter:
    def __init__(self, remaining: int) -> None:
        self.remaining = remaining


class _Host:
    """The supervisor as the resharder sees it; started slots are only recorded."""

    def __init__(self, total: int, remaining: int = 1000) -> None:
        self.plan = Plan(total_shards=total, max_concurrency=1, groups=[list(range(total))])
        self.shards = ShardTable(self.plan.groups)
        self.limiter: Any = _Limiter(remaining)
        self.started: list[WorkerSlot] = []
        self.stopping = False

    def worker_ids(self) -> list[int]:
        return [0]

    def start_slot(self, slot: WorkerSlot) -> None:
        self.started.append(slot)

    async def wait_for(self, predicate: Callable[[], bool], within_s: float) -> bool:
        await asyncio.sleep(within_s)
        return predicate()

    def adopt(self, books: NewSetBooks) -> list[WorkerSlot]:
        raise AssertionError("no switch in these tests")


def _planner(recommended: int, fixed_total: int | None = None) -> Planner:
    async def discover() -> GatewayInfo:
        limits = SessionStartLimit(total=1000, remaining=1000, reset_after_s=0, max_concurrency=1)
        return GatewayInfo(url="ws://127.0.0.1:1", recommended_shards=recommended, limits=limits)

    def plan(gateway: GatewayInfo, total: int) -> Plan:
        return Plan(total, 1, group_shards(list(range(total)), shards_per_worker=4))

    return Planner(discover=discover, plan=plan, fixed_total=fixed_total)


def _resharder(host: _Host, planner: Planner) -> Resharder:
    return Resharder(
        host,
        settings=Settings(identify_reserve=25),
        planner=planner,
        metrics=ReshardMetrics(CollectorRegistry()),
        clock=FakeClock(),
    )


async def test_nothing_to_do_when_discord_recommends_what_runs() -> None:
    host = _Host(8)
    answer = await _resharder(host, _planner(8)).request(Trigger.OPERATOR)
    assert (answer.answer, answer.as_dict()) == (Answer.NOTHING_TO_DO, {"from": 8, "to": 8})
    assert host.started == []


async def test_a_reshard_starts_new_workers_with_ids_of_their_own_and_a_second_is_busy() -> None:
    host = _Host(8)
    resharder = _resharder(host, _planner(16))
    try:
        answer = await resharder.request(Trigger.OPERATOR)
        assert (answer.answer, answer.as_dict()) == (Answer.STARTED, {"from": 8, "to": 16})
        assert [s.worker_id for s in host.started] == [1, 2, 3, 4]
        assert resharder.books(1) is not None and resharder.books(0) is None
        again = await resharder.request(Trigger.OPERATOR)
        assert again.answer is Answer.BUSY
        assert resharder.state() == {"phase": "starting", "from": 8, "to": 16}
    finally:
        await resharder.aclose()


async def test_a_host_running_a_slice_refuses_and_explains_the_procedure() -> None:
    host = _Host(8)
    resharder = _resharder(host, _planner(16, fixed_total=8))
    answer = await resharder.request(Trigger.SHARDING_REQUIRED)
    assert answer.answer is Answer.REFUSED
    assert answer.reason is not None and "every host" in answer.reason
    assert resharder.last is not None and resharder.last["outcome"] == "refused"
    assert host.started == []


async def test_a_budget_that_cannot_pay_for_the_new_set_plus_the_reserve_refuses() -> None:
    host = _Host(8, remaining=40)  # 16 new shards + 25 in reserve = 41
    answer = await _resharder(host, _planner(16)).request(Trigger.OPERATOR)
    assert answer.answer is Answer.REFUSED
    assert answer.as_dict()["error"].startswith("session start budget: 40 left")
    assert host.started == []


async def _started_after(
    resharder: Resharder, host: _Host, clock: FakeClock, s: float
) -> dict[str, int | str] | None:
    """Runs the check loop ``s`` seconds; what the state file would say of a reshard then."""
    resharder.start()
    try:
        for _ in range(20):  # until the check loop waits for its first tick
            if clock.sleepers:
                break
            await asyncio.sleep(0)
        await clock.advance(s)
        for _ in range(20):  # the request awaits discovery: let it finish
            await asyncio.sleep(0)
        return resharder.state()
    finally:
        await resharder.aclose()


def _checking(
    host: _Host,
    planner: Planner,
    clock: FakeClock,
    registry: CollectorRegistry | None = None,
    **settings: Any,
) -> Resharder:
    return Resharder(
        host,
        settings=Settings(**settings),
        planner=planner,
        metrics=ReshardMetrics(registry or CollectorRegistry()),
        clock=clock,
    )


async def test_the_recommendation_is_asked_every_check_interval() -> None:
    host, clock = _Host(8), FakeClock()
    resharder = _checking(host, _planner(16), clock, reshard_check_interval_s=100.0)
    assert await _started_after(resharder, host, clock, 99.0) is None
    host2, clock2 = _Host(8), FakeClock()
    resharder2 = _checking(host2, _planner(16), clock2, reshard_check_interval_s=100.0)
    started = await _started_after(resharder2, host2, clock2, 100.0)
    assert started == {"phase": "starting", "from": 8, "to": 16}
    assert resharder2.as_dict()["last"] is None


async def test_a_shard_past_reshard_at_guilds_reshards_before_the_interval() -> None:
    host, clock = _Host(8), FakeClock()
    view = host.shards.get(3)
    assert view is not None
    view.guilds = 2100
    resharder = _checking(host, _planner(8), clock, reshard_at_guilds=2000)
    # Discord still recommends 8: one more shard brings 2,100 guilds under 2,000 a shard
    started = await _started_after(resharder, host, clock, 60.0)
    assert started == {"phase": "starting", "from": 8, "to": 9}


async def test_a_crowded_shard_that_cannot_be_resharded_is_retried_each_interval_only() -> None:
    host, clock, registry = _Host(8, remaining=10), FakeClock(), CollectorRegistry()
    view = host.shards.get(3)
    assert view is not None
    view.guilds = 2100
    resharder = _checking(
        host, _planner(8), clock, registry, reshard_at_guilds=2000, reshard_check_interval_s=600.0
    )
    assert await _started_after(resharder, host, clock, 599.0) is None
    refused = registry.get_sample_value("shardmgr_reshard_total", {"outcome": "refused"})
    assert refused == 1.0  # at the first look, not at every look after it
    assert resharder.last is not None and resharder.last["trigger"] == "guilds"

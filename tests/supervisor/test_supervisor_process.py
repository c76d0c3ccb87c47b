"""The supervisor with real worker processes whose gateway is unreachable: process
supervision only (pings, kills, restarts, generations, shutdown), no gateway traffic."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shardmgr.config import Settings
from shardmgr.discovery import GatewayInfo
from shardmgr.httpapi import CommandQueueFull
from shardmgr.identify import LocalIdentifyLimiter, SessionStartLimit
from shardmgr.metrics import Metrics
from shardmgr.plan import Plan, make_plan
from shardmgr.restarts import RestartPolicy
from shardmgr.supervisor import Supervisor
from shardmgr.workerproc import SpawnedWorker
from shardmgr.workerslot import RestartReason
from tests.supervisor.conftest import make_token
from workers import ipc
from workers.commands import MAX_QUEUED_COMMANDS

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def remaining() -> int:
    return 1000


async def _replan_to_six(old: Plan) -> tuple[GatewayInfo, Plan] | None:
    limits = SessionStartLimit(total=1000, remaining=1000, reset_after_s=1e5, max_concurrency=2)
    gateway = GatewayInfo(
        url=f"ws://127.0.0.1:{_closed_port()}", recommended_shards=6, limits=limits
    )
    return gateway, make_plan(shards="6", recommended=6, max_concurrency=2, shards_per_worker=2)


@pytest.fixture
async def sup(remaining: int) -> AsyncIterator[Supervisor]:
    settings = Settings(
        ping_interval_s=0.2,
        ping_timeout_s=1.5,
        restart_backoff_base_s=0.1,
        shutdown_timeout_s=3.0,
        start_timeout_s=20.0,
        identify_reserve=2,
    )
    limits = SessionStartLimit(
        total=1000, remaining=remaining, reset_after_s=1e5, max_concurrency=2
    )
    gateway = GatewayInfo(
        url=f"ws://127.0.0.1:{_closed_port()}", recommended_shards=4, limits=limits
    )
    plan = make_plan(shards="4", recommended=4, max_concurrency=2, shards_per_worker=2)
    supervisor = Supervisor(
        settings=settings,
        token=make_token(),
        gateway=gateway,
        plan=plan,
        limiter=LocalIdentifyLimiter(limits, window_s=0.2),
        metrics=Metrics(),
        replan=_replan_to_six,
        announce=lambda text: None,
    )
    run = asyncio.create_task(supervisor.run())
    assert await supervisor.wait_for(supervisor.healthy, 30.0), supervisor.status()
    yield supervisor
    supervisor.request_stop(False)
    assert await asyncio.wait_for(run, 30.0) == 0


def _worker(sup: Supervisor, wid: int) -> dict[str, Any]:
    worker: dict[str, Any] = sup.status()["workers"][wid]
    return worker


def _replaced(sup: Supervisor, wid: int, old_pid: object) -> bool:
    w = _worker(sup, wid)
    return bool(w["up"]) and w["pid"] not in (None, old_pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); reaped means gone from /proc.
    return os.path.exists(f"/proc/{pid}") and "Z" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


async def test_killed_worker_is_restarted_with_a_new_generation(sup: Supervisor) -> None:
    before = _worker(sup, 0)
    os.kill(int(before["pid"]), signal.SIGKILL)
    assert await sup.wait_for(lambda: _replaced(sup, 0, before["pid"]), 30.0)
    after = _worker(sup, 0)
    assert int(after["gen"]) > int(before["gen"])
    assert after["restarts"] == 1 and "exit status -9" in str(after["last_exit"])
    assert not _alive(int(before["pid"]))


async def test_stopped_worker_is_detected_as_hung_killed_and_restarted(sup: Supervisor) -> None:
    before = _worker(sup, 1)
    os.kill(int(before["pid"]), signal.SIGSTOP)
    assert await sup.wait_for(lambda: _replaced(sup, 1, before["pid"]), 30.0)
    after = _worker(sup, 1)
    assert "hung" in str(after["last_exit"]) and after["restarts"] == 1
    assert not _alive(int(before["pid"]))


async def test_a_stale_generations_report_is_refused_while_a_newer_process_runs(
    sup: Supervisor,
) -> None:
    old = _worker(sup, 0)
    os.kill(int(old["pid"]), signal.SIGKILL)
    # The slot has a live process of a newer generation, so only the generation check
    # stands between the old process's report and the slot's shards.
    assert await sup.wait_for(lambda: _replaced(sup, 0, old["pid"]), 30.0)
    new_gen = int(_worker(sup, 0)["gen"])
    assert new_gen > int(old["gen"])
    info = ipc.SessionInfo(session_id="stale", seq=99, resume_url="ws://x")
    stale = ipc.SessionStarted(
        gen=int(old["gen"]), shard_id=0, kind="identify", session=info, guilds=5, at=0
    )
    stale_before = sup.status()["supervisor"]["stale_messages"]
    assert sup.handle_message(0, stale) is False
    assert sup.sessions.get(0) is None
    shard = sup.status()["shards"][0]
    assert shard["session_kind"] is None and shard["guilds"] == 0
    assert sup.status()["supervisor"]["stale_messages"] == stale_before + 1
    # The same report from the current generation is applied: the check is on gen alone.
    fresh = ipc.SessionStarted(
        gen=new_gen, shard_id=0, kind="identify", session=info, guilds=5, at=0
    )
    assert sup.handle_message(0, fresh) is True
    assert sup.sessions.get(0) == info


async def test_stop_reaps_every_worker(sup: Supervisor) -> None:
    pids = [int(w["pid"]) for w in sup.status()["workers"]]
    sup.request_stop(False)
    assert await sup.wait_for(
        lambda: all(w["state"] == "stopped" for w in sup.status()["workers"]), 15.0
    )
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.parametrize("remaining", [3])
async def test_every_identify_leaves_the_reserve_a_shards_first_included(sup: Supervisor) -> None:
    gen = int(_worker(sup, 0)["gen"])

    def ask(shard: int, nonce: int) -> None:
        assert sup.handle_message(0, ipc.IdentifyRequest(gen=gen, shard_id=shard, nonce=nonce))

    ask(0, 1)  # 3 left, a reserve of 2: one start may be spent
    assert await sup.wait_for(lambda: sup.identifies_granted == 1, 10.0)
    ask(1, 2)  # shard 1's first identify: it waits like a restart would
    assert await sup.wait_for(lambda: sup.exhausted is not None, 10.0)
    status = sup.status()["supervisor"]
    assert "reserve" in status["budget_exhausted"] and status["session_start_remaining"] == 2
    assert sup.identifies_granted == 1


async def test_identify_sent_report_ends_the_hold_of_its_grant(sup: Supervisor) -> None:
    gen = int(_worker(sup, 0)["gen"])
    assert sup.handle_message(0, ipc.IdentifyRequest(gen=gen, shard_id=0, nonce=41))
    assert await sup.wait_for(lambda: sup.permits.held == 1, 10.0)
    assert sup.handle_message(0, ipc.IdentifySent(gen=gen, shard_id=0, nonce=41))
    assert sup.permits.held == 0


def _crashy_supervisor(settings: Settings) -> Supervisor:
    """One worker whose handler exits at once: a crash loop on demand."""
    limits = SessionStartLimit(total=1000, remaining=1000, reset_after_s=1e5, max_concurrency=1)
    url = f"ws://127.0.0.1:{_closed_port()}"
    gateway = GatewayInfo(url=url, recommended_shards=1, limits=limits)
    return Supervisor(
        settings=settings,
        token=make_token(),
        gateway=gateway,
        plan=make_plan(shards="1", recommended=1, max_concurrency=1),
        limiter=LocalIdentifyLimiter(limits, window_s=0.2),
        metrics=Metrics(),
        replan=_replan_to_six,
        announce=lambda text: None,
    )


async def test_crash_loop_is_reported_and_slowed_down(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        handler="tests.supervisor.crashy:crash",
        restart_backoff_base_s=0.05,
        restart_backoff_cap_s=0.4,
        crash_loop_restarts=3,
        shutdown_timeout_s=3.0,
    )
    supervisor = _crashy_supervisor(settings)
    run = asyncio.create_task(supervisor.run())
    try:
        assert await supervisor.wait_for(
            lambda: (
                bool(supervisor.status()["workers"]) and _worker(supervisor, 0)["restarts"] >= 5
            ),
            60.0,
        )
        worker = _worker(supervisor, 0)
        assert worker["crash_looping"] is True
        assert "exit status 3" in str(worker["last_exit"])
        assert "crash looping" in caplog.text
    finally:
        supervisor.request_stop(False)
        assert await asyncio.wait_for(run, 30.0) == 0


class _HourLongBackoff(RestartPolicy):
    def next_delay(self) -> float:
        super().next_delay()
        return 0.0 if self.failures == 1 else 3600.0


async def test_replan_does_not_wait_for_a_worker_in_restart_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shardmgr.supervisor.RestartPolicy", _HourLongBackoff)
    supervisor = _crashy_supervisor(
        Settings(handler="tests.supervisor.crashy:crash", shutdown_timeout_s=3.0)
    )
    run = asyncio.create_task(supervisor.run())
    try:
        assert await supervisor.wait_for(
            lambda: (
                bool(supervisor.status()["workers"])
                and _worker(supervisor, 0)["state"] == "backoff"
            ),
            30.0,
        )
        supervisor._queue(RestartReason.REPLAN)
        assert await supervisor.wait_for(lambda: supervisor.plan.total_shards == 6, 20.0)
        assert supervisor.replans == 1
    finally:
        supervisor.request_stop(False)
        assert await asyncio.wait_for(run, 30.0) == 0


def _stopped_at(pid: int) -> str:
    return "reaped" if not _alive(pid) else "alive"


async def test_identify_request_for_another_workers_shard_is_refused(
    sup: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    gen = int(_worker(sup, 0)["gen"])
    assert sup.handle_message(0, ipc.IdentifyRequest(gen=gen, shard_id=2, nonce=7))
    assert "does not run" in caplog.text
    assert sup.permits.pending == 0 and sup.identifies_granted == 0


async def test_a_failing_report_does_not_get_a_healthy_worker_killed(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _worker(sup, 0)

    def broken(worker_id: int, msg: ipc.ToSupervisor) -> bool:
        raise RuntimeError("supervisor bug")

    monkeypatch.setattr(sup, "handle_message", broken)
    # Every worker answers pings, so reports keep failing while the worker stays healthy.
    assert await sup.wait_for(lambda: sup.message_errors >= 5, 20.0)
    monkeypatch.undo()
    after = _worker(sup, 0)
    assert after["pid"] == before["pid"] and after["restarts"] == 0


async def test_old_process_is_reaped_before_its_replacement_spawns(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _worker(sup, 0)
    seen_at_spawn: list[str] = []
    original = SpawnedWorker.spawn

    async def spawn(**kwargs: Any) -> SpawnedWorker:
        if kwargs["worker_id"] == 0:
            seen_at_spawn.append(_stopped_at(int(old["pid"])))
        return await original(**kwargs)

    monkeypatch.setattr(SpawnedWorker, "spawn", spawn)
    os.kill(int(old["pid"]), signal.SIGKILL)
    assert await sup.wait_for(lambda: _replaced(sup, 0, old["pid"]), 30.0)
    assert seen_at_spawn == ["reaped"]


def _shard_stopped_4011(gen: int) -> ipc.ShardStopped:
    return ipc.ShardStopped(
        gen=gen, shard_id=0, reason="sharding required", close_code=4011, fatal=True
    )


async def test_4011_replans_to_the_new_shard_count(sup: Supervisor) -> None:
    gen = int(_worker(sup, 0)["gen"])
    assert sup.handle_message(0, _shard_stopped_4011(gen))
    assert await sup.wait_for(
        lambda: sup.plan.total_shards == 6 and len(sup.status()["workers"]) == 3 and sup.healthy(),
        30.0,
    ), sup.status()
    assert sup.replans == 1
    assert [w["shards"] for w in sup.status()["workers"]] == [[0, 1], [2, 3], [4, 5]]


async def test_stop_during_a_replan_closes_workers_cleanly(sup: Supervisor) -> None:
    gen = int(_worker(sup, 0)["gen"])
    slots = list(sup._slots.values())
    assert sup.handle_message(0, _shard_stopped_4011(gen))
    assert await sup.wait_for(lambda: any(s.state == "stopping" for s in slots), 30.0)
    sup.request_stop(True)
    assert await sup.wait_for(lambda: all(s.state == "stopped" for s in slots), 30.0)
    for slot in slots:
        assert str(slot.last_exit).startswith("stopped (exit status 0)"), slot.last_exit


async def test_a_full_command_queue_in_the_worker_is_refused_with_retry_after(
    sup: Supervisor,
) -> None:
    # The gateway is unreachable: the shard holds every command it is given.
    d = b'{"since":null,"activities":[],"status":"idle","afk":false}'
    for _ in range(MAX_QUEUED_COMMANDS):
        assert await sup.send_command(0, 3, d)
    with pytest.raises(CommandQueueFull) as full:
        await sup.send_command(0, 3, d)
    assert full.value.retry_after_s >= 1
    # another shard's queue is its own
    assert await sup.send_command(1, 3, d)

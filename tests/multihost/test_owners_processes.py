"""One owner per shard, as real processes: supervisors with overlapping slices on one Redis
and one fake gateway run each shard once and say so; a host killed with -9 has its shards
taken over once its leases expire; a Redis restarted from a snapshot taken mid-window causes
no identify violation across two hosts. The fake's sessions are the ground truth."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.multihost.redis_server import RedisServer
from tests.multihost.test_multihost_processes import until
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected

pytestmark = [pytest.mark.redis, pytest.mark.integration, pytest.mark.timeout(120)]

LEASE_S = 1.5


async def start_host(
    procs: list[Any],
    fake: FakeGatewayProc,
    tmp: Path,
    name: str,
    redis_url: str,
    *args: str,
    window_s: float,
) -> SupervisorProc:
    home = tmp / name
    home.mkdir()
    sup = await SupervisorProc.start(
        fake,
        home,
        "--identify-limiter",
        redis_url,
        "--workers",
        "1",
        *args,
        env={"SHARDMGR_OWNER_LEASE_S": str(LEASE_S), "SHARDMGR_IDENTIFY_WINDOW_S": str(window_s)},
        name=name,
    )
    procs.append(sup)
    return sup


async def live_sessions(fake: FakeGatewayProc) -> Counter[int]:
    """Shard -> sessions the fake is serving on an open connection right now."""
    return Counter(
        s["shard_id"] for s in await fake.sessions() if s["state"] == "active" and s["connected"]
    )


def shards_in(doc: dict[str, Any], state: str) -> list[int]:
    return [s["id"] for s in doc["shards"] if s["state"] == state]


async def metric(host: SupervisorProc, name: str) -> float:
    async with host.http.get(host.url + "/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def overlapping_hosts(
    procs: list[Any], tmp: Path, redis_url: str
) -> tuple[FakeGatewayProc, SupervisorProc, SupervisorProc]:
    """Host A (shards 0-2) up first, then host B (1-3): B runs only shard 3."""
    fake = await FakeGatewayProc.start(shards=4, max_concurrency=2, identify_window_s=0.25)
    procs.append(fake)
    host_a = await start_host(
        procs,
        fake,
        tmp,
        "a",
        redis_url,
        "--total-shards",
        "4",
        "--shard-ids",
        "0-2",
        window_s=0.25,
    )
    await host_a.wait_status(all_connected, 60.0)
    host_b = await start_host(
        procs,
        fake,
        tmp,
        "b",
        redis_url,
        "--total-shards",
        "4",
        "--shard-ids",
        "1-3",
        window_s=0.25,
    )

    def b_runs_only_shard_3(doc: dict[str, Any]) -> bool:
        return shards_in(doc, "connected") == [3] and len(doc["ownership"]["not_owned"]) == 2

    await host_b.wait_status(b_runs_only_shard_3, 60.0)
    return fake, host_a, host_b


async def test_overlapping_slices_run_every_shard_once_and_report_the_overlap(
    redis_server: RedisServer, procs: list[Any], tmp_path: Path
) -> None:
    fake, host_a, host_b = await overlapping_hosts(procs, tmp_path, redis_server.url)
    owner_a = (await host_a.status())["ownership"]["host_id"]
    doc = await host_b.status()
    assert doc["ownership"]["not_owned"] == {"1": owner_a, "2": owner_a}
    assert doc["ownership"]["unowned"] == []
    assert sorted(shards_in(doc, "waiting_permit")) == [1, 2]
    assert await metric(host_b, "shardmgr_shards_owned_elsewhere") == 2
    assert await metric(host_a, "shardmgr_shards_owned_elsewhere") == 0
    # the shards it waits for are another host's job: host B is ready (a rolling update
    # that changes the slicing must not stall on it)
    async with host_b.http.get(host_b.url + "/readyz") as resp:
        assert resp.status == 200
    log = host_b.stderr.read_text()
    assert "owned by another host; not starting them" in log
    assert "shards=1-2" in log and owner_a in log
    assert all_connected(await host_a.status())
    assert await live_sessions(fake) == {0: 1, 1: 1, 2: 1, 3: 1}
    assert (await fake.stats())["identifies"] == 4


async def test_a_killed_hosts_shards_are_taken_over_after_its_lease_expires(
    redis_server: RedisServer, procs: list[Any], tmp_path: Path
) -> None:
    fake, host_a, host_b = await overlapping_hosts(procs, tmp_path, redis_server.url)
    workers = [w["pid"] for w in (await host_a.status())["workers"] if w["pid"]]
    killed_at = time.monotonic()
    os.kill(host_a.proc.pid, signal.SIGKILL)
    await host_a.wait_exit()
    host_a.closed = True
    await host_a.http.close()
    await until("host A's workers to exit", lambda: _all_gone(workers), 30.0)

    await host_b.wait_status(all_connected, 60.0)
    took = time.monotonic() - killed_at
    doc = await host_b.status()
    assert doc["ownership"]["owned"] == [1, 2, 3]
    assert doc["ownership"]["not_owned"] == {}
    assert doc["ownership"]["taken_over"] == 2
    assert took >= LEASE_S * 2 / 3, "taken over before the dead host's lease could expire"
    assert "took over a shard whose owner's lease expired" in host_b.stderr.read_text()
    # shard 0 was host A's only: nobody owns it now, and host B says so
    await host_b.wait_status(lambda d: d["ownership"]["unowned"] == [0], 10.0)
    live = await live_sessions(fake)
    assert live == {1: 1, 2: 1, 3: 1}


async def _all_gone(pids: list[int]) -> bool:
    return all(pid_gone(pid) for pid in pids)


async def test_a_redis_restarted_from_a_mid_window_snapshot_causes_no_identify_violation(
    redis_server: RedisServer, procs: list[Any], tmp_path: Path
) -> None:
    # Longer than a worker's 1-5 s wait before it identifies again after op 9, so host B's
    # identify would land inside host A's window without the fence. One bucket: both hosts
    # share every window.
    window_s = 7.0
    fake = await FakeGatewayProc.start(shards=2, max_concurrency=1, identify_window_s=window_s)
    procs.append(fake)
    host_a, host_b = [
        await start_host(
            procs,
            fake,
            tmp_path,
            name,
            redis_server.url,
            "--total-shards",
            "2",
            "--shard-ids",
            shard,
            window_s=window_s,
        )
        for name, shard in (("a", "0"), ("b", "1"))
    ]
    for host in (host_a, host_b):
        await host.wait_status(all_connected, 90.0)
    inspect = aioredis.from_url(redis_server.url)
    try:
        await inspect.save()
    finally:
        await inspect.aclose()
    identifies = (await fake.stats())["identifies"]
    await fake.fault(shard_id=0, kind="invalid_session", resumable=False)

    async def host_a_identified() -> bool:
        return bool((await fake.stats())["identifies"] > identifies)

    await until("host A's re-identify", host_a_identified, 30.0)
    redis_server.restart()  # the lease of that identify is not in the snapshot
    await fake.fault(shard_id=1, kind="invalid_session", resumable=False)

    async def host_b_identified() -> bool:
        return bool((await fake.stats())["identifies"] > identifies + 1)

    await until("host B's re-identify", host_b_identified, 60.0)
    for host in (host_a, host_b):
        await host.wait_status(all_connected, 60.0)
    stats = await fake.stats()
    assert stats["identify_violations"] == 0
    assert stats["identifies"] == identifies + 2
    assert "redis restarted or failed over" in host_b.stderr.read_text()


async def test_a_host_that_lost_a_running_shards_lease_stops_running_it(
    redis_server: RedisServer, inspect: Any, procs: list[Any], tmp_path: Path
) -> None:
    fake = await FakeGatewayProc.start(shards=2, max_concurrency=2, identify_window_s=0.25)
    procs.append(fake)
    host = await start_host(
        procs, fake, tmp_path, "a", redis_server.url, "--total-shards", "2", window_s=0.25
    )
    await host.wait_status(all_connected, 60.0)
    owner_key = next(k for k in await inspect.keys("*owner:0"))
    # another host took shard 0 while this one could not renew (a stall, a partition)
    await inspect.set(owner_key, "intruder", px=60_000)

    def shard_0_waits_for_its_owner(doc: dict[str, Any]) -> bool:
        return shards_in(doc, "waiting_permit") == [0] and shards_in(doc, "connected") == [1]

    doc = await host.wait_status(shard_0_waits_for_its_owner, 30.0)
    assert doc["ownership"]["not_owned"] == {"0": "intruder"}
    assert "another host now owns a shard this host ran" in host.stderr.read_text()
    assert await live_sessions(fake) == {1: 1}

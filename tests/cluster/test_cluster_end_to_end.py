"""One bot of 8 shards in 4 workers against the fake: a handler in one worker commands
another worker's shard, gathers from every worker, survives a worker dying mid-call and
waits for a rolled worker's successor."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.harness import Bot, bot_args, bot_env, worker_pids
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SHARDS = 8
WORKERS = 4


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Bot, SupervisorProc]]:
    fake = await FakeGatewayProc.start(shards=SHARDS, event_rate=0.0)
    sup: SupervisorProc | None = None
    try:
        out = tmp_path / "records.jsonl"
        sup = await SupervisorProc.start(
            fake,
            tmp_path,
            *bot_args("--shards", str(SHARDS), "--workers", str(WORKERS)),
            env=bot_env(out),
        )
        await sup.wait_status(all_connected, 60.0)
        yield Bot(fake, out, SHARDS), sup
    finally:
        if sup is not None:
            await sup.close()
        await fake.close()


async def test_a_handler_in_worker_0_changes_the_voice_state_of_a_guild_on_worker_3(
    cluster: tuple[Bot, SupervisorProc],
) -> None:
    bot, _ = cluster
    # Worker 0 runs shards 0-1, worker 3 runs shards 6-7.
    here = (await bot.guilds_of_shard(0))[0]
    there = (await bot.guilds_of_shard(7))[0]
    doc = await bot.ask(f"!voice {there} -", here)
    assert doc["worker"] == 0
    assert doc["result"] == "ok"
    sessions = await bot.fake.sessions()
    by_shard = {s["shard_id"]: s for s in sessions if s["state"] == "active"}
    assert by_shard[7]["requests_by_op"].get("4") == 1
    assert all("4" not in s["requests_by_op"] for sid, s in by_shard.items() if sid != 7)


async def test_guilds_answers_the_fake_total_guild_count_from_every_worker(
    cluster: tuple[Bot, SupervisorProc],
) -> None:
    bot, _ = cluster
    here = (await bot.guilds_of_shard(3))[0]
    doc = await bot.ask("!guilds", here)
    assert doc["result"] == f"guilds: {await bot.total_guilds()}"


async def test_where_names_the_shard_and_worker_of_a_guild(
    cluster: tuple[Bot, SupervisorProc],
) -> None:
    bot, _ = cluster
    guild = (await bot.guilds_of_shard(5))[0]
    doc = await bot.ask(f"!where {guild}", (await bot.guilds_of_shard(0))[0])
    assert doc["result"] == f"guild {guild}: shard 5, worker 2"


async def test_request_members_with_wait_returns_the_chunks_from_another_worker(
    cluster: tuple[Bot, SupervisorProc],
) -> None:
    bot, _ = cluster
    guild = (await bot.guilds_of_shard(6))[0]
    doc = await bot.ask(f"!members {guild}", (await bot.guilds_of_shard(1))[0])
    assert isinstance(doc["result"], int) and doc["result"] > 0, doc


async def test_call_all_with_a_worker_killed_mid_call_answers_the_others_and_an_error(
    cluster: tuple[Bot, SupervisorProc],
) -> None:
    bot, sup = cluster
    pids = await worker_pids(sup)
    here = (await bot.guilds_of_shard(0))[0]
    started = time.monotonic()
    await bot.say("!callall slow 2", here)
    # Every worker is inside rpc_slow: kill worker 2 before it can answer.
    deadline = time.monotonic() + 20
    while len([d for d in bot.records() if "slow_started" in d]) < WORKERS:
        assert time.monotonic() < deadline, bot.records()
        await asyncio.sleep(0.05)
    os.kill(pids[2], signal.SIGKILL)
    doc = await bot.wait_record("content", "!callall slow 2")
    # A dead worker is noticed when it dies, not at the 6 s call timeout.
    assert doc["elapsed_s"] < 5
    assert time.monotonic() - started < 6
    result = doc["result"]
    answered = {int(key.split("/")[1]): pid for key, pid in result["results"].items()}
    assert answered == {w: pids[w] for w in (0, 1, 3)}
    assert {int(key.split("/")[1]): why for key, why in result["errors"].items()} == {
        2: "worker_gone"
    }


async def test_a_call_to_a_worker_being_rolled_waits_for_its_successor(
    cluster: tuple[Bot, SupervisorProc],
) -> None:
    bot, sup = cluster
    old = await worker_pids(sup)
    old_gen = (await sup.status())["workers"][0]["gen"]
    sup.proc.send_signal(signal.SIGHUP)
    # Worker 0 rolls first: ask it while it is stopping or starting (or, on a slow poll,
    # already back: then the answer must still come from the successor).
    await sup.wait_status(
        lambda doc: doc["workers"][0]["state"] != "running" or doc["workers"][0]["gen"] != old_gen,
        within_s=30.0,
    )
    doc = await bot.ask("!call 0 pid", (await bot.guilds_of_shard(2))[0])
    new = await worker_pids(sup)
    assert doc["result"] == new[0] != old[0]


async def test_an_oversized_result_is_a_clear_error_and_counted(
    cluster: tuple[Bot, SupervisorProc],
) -> None:
    bot, sup = cluster
    doc = await bot.ask("!call 1 big", (await bot.guilds_of_shard(0))[0])
    assert doc["result"]["error"] == "ClusterCallError"
    assert "call_max_bytes" in doc["result"]["message"]
    async with sup.http.get(sup.url + "/metrics") as resp:
        text = await resp.text()
    assert 'shardmgr_cluster_call_errors_total{reason="oversized"} 1.0' in text
    # Nothing else suffered: every worker still answers.
    doc = await bot.ask("!callall pid", (await bot.guilds_of_shard(0))[0])
    assert len(doc["result"]["results"]) == WORKERS

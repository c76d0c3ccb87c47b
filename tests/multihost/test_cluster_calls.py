"""Two supervisors of one bot through a real redis-server: a handler on host 0 reaches
host 1's shards and workers (commands, ``!guilds``, ``call_all``)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.harness import Bot, bot_args, bot_env
from tests.multihost.redis_server import RedisServer
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected

pytestmark = [pytest.mark.redis, pytest.mark.integration, pytest.mark.timeout(120)]

SHARDS = 8
HOSTS = 2


@pytest.fixture
async def two_hosts(
    redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[Bot, list[SupervisorProc]]]:
    fake = await FakeGatewayProc.start(shards=SHARDS, event_rate=0.0, max_concurrency=2)
    out = tmp_path / "records.jsonl"
    sups: list[SupervisorProc] = []

    async def one(index: int) -> SupervisorProc:
        home = tmp_path / f"host{index}"
        home.mkdir()
        sup = await SupervisorProc.start(
            fake,
            home,
            *bot_args("--total-shards", str(SHARDS), "--workers", "2"),
            "--identify-limiter",
            redis_server.url,
            env=bot_env(out, SHARDMGR_HOST_INDEX=str(index), SHARDMGR_HOST_COUNT=str(HOSTS)),
            name=f"host{index}",
        )
        sups.append(sup)
        return sup

    try:
        await asyncio.gather(*(one(i) for i in range(HOSTS)))
        for sup in sups:
            await sup.wait_status(all_connected, 60.0)
        yield Bot(fake, out, SHARDS), sorted(sups, key=lambda s: s.stderr.name)
    finally:
        for sup in sups:
            await sup.close()
        await fake.close()


async def test_guilds_counts_every_worker_of_both_hosts(
    two_hosts: tuple[Bot, list[SupervisorProc]],
) -> None:
    bot, _ = two_hosts
    doc = await bot.ask("!guilds", (await bot.guilds_of_shard(0))[0])
    assert doc["result"] == f"guilds: {await bot.total_guilds()}"


async def test_call_all_reaches_the_workers_of_both_hosts(
    two_hosts: tuple[Bot, list[SupervisorProc]],
) -> None:
    bot, _ = two_hosts
    doc = await bot.ask("!callall echo hi", (await bot.guilds_of_shard(1))[0])
    assert doc["result"] == {
        "results": {f"{h}/{w}": "hi" for h in ("0", "1") for w in (0, 1)},
        "errors": {},
    }


async def test_a_handler_on_host_0_changes_the_voice_state_of_a_guild_on_host_1(
    two_hosts: tuple[Bot, list[SupervisorProc]],
) -> None:
    bot, _ = two_hosts
    there = (await bot.guilds_of_shard(6))[0]
    doc = await bot.ask(f"!voice {there} -", (await bot.guilds_of_shard(0))[0])
    assert doc["result"] == "ok"
    sessions = await bot.fake.sessions()
    by_shard = {s["shard_id"]: s for s in sessions if s["state"] == "active"}
    assert by_shard[6]["requests_by_op"].get("4") == 1


async def test_call_all_with_a_host_gone_answers_the_others_and_errors_for_its_workers(
    two_hosts: tuple[Bot, list[SupervisorProc]],
) -> None:
    bot, sups = two_hosts
    # Killed outright: its directory entry stays until it expires, so it is asked and
    # never answers.
    os.killpg(sups[1].proc.pid, signal.SIGKILL)
    await sups[1].proc.wait()
    doc = await bot.ask("!callall echo hi", (await bot.guilds_of_shard(0))[0])
    assert doc["result"] == {
        "results": {"0/0": "hi", "0/1": "hi"},
        "errors": {"1/0": "host_unreachable", "1/1": "host_unreachable"},
    }
    # The call timeout is 6 s; the host's part is given up one second after it.
    assert doc["elapsed_s"] < 6 + 1 + 1

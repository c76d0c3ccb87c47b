"""Canary rolling restarts, end to end: SIGHUP after a bad deploy leaves every shard on its
old worker (the fake gateway's own sessions, polled every 100 ms, are the ground truth);
the fixed deploy then hands over without an identify."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.supervisor.harness import POLL_S, FakeGatewayProc, SupervisorProc, all_connected

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MODULE = "canary_bot_r5"
GOOD = "async def handler(event):\n    pass\n"
SYNTAX_ERROR = "async def handler(event:\n    pass\n"
START_RAISES = (
    "class Bot:\n"
    "    async def start(self):\n"
    "        raise RuntimeError('cannot reach the database')\n"
    "    async def on_message_create(self, event):\n"
    "        pass\n"
)
SHARDS = 4


@dataclass
class Bot:
    fake: FakeGatewayProc
    sup: SupervisorProc
    source: Path

    def deploy(self, text: str) -> None:
        self.source.write_text(text)

    def sighup(self) -> None:
        os.kill(self.sup.proc.pid, signal.SIGHUP)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    app = tmp_path / "app"
    app.mkdir()
    source = app / f"{MODULE}.py"
    source.write_text(GOOD)
    fake = await FakeGatewayProc.start(shards=SHARDS, max_concurrency=2, event_rate=10.0)
    try:
        sup = await SupervisorProc.start(
            fake, tmp_path,
            "--shards", str(SHARDS), "--shards-per-worker", "2",
            "--app-dir", str(app), "--handler", f"{MODULE}:handler",
        )  # fmt: skip
        try:
            await sup.wait_status(all_connected)
            yield Bot(fake, sup, source)
        finally:
            await sup.close()
    finally:
        await fake.close()


def connected_sessions(sessions: list[dict[str, Any]]) -> dict[int, str]:
    """shard -> session id of its live connection, by the fake's own account."""
    return {
        s["shard_id"]: s["session_id"]
        for s in sessions
        if s["state"] == "active" and s["connected"]
    }


async def poll_until_rolled(bot: Bot, state: str) -> list[dict[int, str]]:
    """The fake's connected sessions every 100 ms until the roll reached ``state``."""
    seen: list[dict[int, str]] = []
    async with asyncio.timeout(60):
        while True:
            seen.append(connected_sessions(await bot.fake.sessions()))
            doc = await bot.sup.status()
            if doc["supervisor"]["rolling"]["state"] == state:
                return seen
            await asyncio.sleep(POLL_S)


async def metric(bot: Bot, name: str) -> float:
    async with bot.sup.http.get(bot.sup.url + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def error_lines(bot: Bot) -> list[str]:
    return [line for line in bot.sup.stderr.read_text().splitlines() if " error " in line]


async def test_sighup_with_a_syntax_error_keeps_every_shard_on_its_old_worker(bot: Bot) -> None:
    before = await bot.sup.status()
    sessions = connected_sessions(await bot.fake.sessions())
    assert len(sessions) == SHARDS
    bot.deploy(SYNTAX_ERROR)
    bot.sighup()
    seen = await poll_until_rolled(bot, "failed")
    # Over the whole roll every shard stayed on the very same live connection.
    assert seen and all(polled == sessions for polled in seen), seen
    after = await bot.sup.status()
    assert [w["pid"] for w in after["workers"]] == [w["pid"] for w in before["workers"]]
    assert all(w["restarts"] == 0 for w in after["workers"])
    rolling = after["supervisor"]["rolling"]
    assert rolling["handler"] == f"{MODULE}:handler"
    assert "SyntaxError" in rolling["reason"]
    [line] = error_lines(bot)
    assert f"handler {MODULE}:handler did not load in the new worker" in line
    assert "SyntaxError" in line
    assert await metric(bot, "shardmgr_rolling_restart_failures_total") == 1
    assert await metric(bot, "shardmgr_rolling_restart_failed") == 1


async def test_sighup_with_a_failing_start_keeps_every_shard_on_its_old_worker(bot: Bot) -> None:
    sessions = connected_sessions(await bot.fake.sessions())
    bot.deploy(START_RAISES.replace("class Bot", "class handler"))
    bot.sighup()
    seen = await poll_until_rolled(bot, "failed")
    assert all(polled == sessions for polled in seen), seen
    rolling = (await bot.sup.status())["supervisor"]["rolling"]
    assert rolling["reason"] == (
        f"handler '{MODULE}:handler': start() raised RuntimeError: cannot reach the database"
    )


async def test_fixed_deploy_after_a_failed_one_hands_over_without_identify(bot: Bot) -> None:
    bot.deploy(SYNTAX_ERROR)
    bot.sighup()
    await poll_until_rolled(bot, "failed")
    before = await bot.sup.status()
    identifies = (await bot.fake.stats())["identifies"]
    bot.deploy(GOOD)
    bot.sighup()
    await poll_until_rolled(bot, "finished")
    old_pids = {w["pid"] for w in before["workers"]}
    after = await bot.sup.wait_status(all_connected)
    assert not {w["pid"] for w in after["workers"]} & old_pids
    assert (await bot.fake.stats())["identifies"] == identifies
    assert await metric(bot, "shardmgr_rolling_restart_failed") == 0
    assert await metric(bot, "shardmgr_rolling_restart_failures_total") == 1

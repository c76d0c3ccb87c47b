"""Fatal gateway answers end the run: every shard refused with 4014 makes `shardmgr start`
exit non-zero within seconds with one line naming the fix; while only some shards are
refused, /readyz says which and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardmgr.fatal import EXIT_FATAL
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, wait_fake

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PORTAL_FIX = (
    "the bot asked for GUILD_MEMBERS, which is not enabled for it: enable it in the Discord "
    "Developer Portal (your application's Bot page, Privileged Gateway Intents) or drop it "
    "from --intents"
)


async def test_disallowed_intents_on_every_shard_exit_with_the_fix(tmp_path: Path) -> None:
    fake = await FakeGatewayProc.start(shards=2, extra=("--privileged-intents", "0"))
    try:
        sup = await SupervisorProc.start(
            fake, tmp_path, "--shards", "2", "--intents", "GUILDS,GUILD_MEMBERS"
        )
        try:
            assert await sup.wait_exit(20.0) == EXIT_FATAL
        finally:
            await sup.close()
        lines = [
            line for line in sup.stderr.read_text().splitlines() if "every shard stopped" in line
        ]
        assert len(lines) == 1, sup.stderr.read_text()[-3000:]
        assert (
            f"exiting with status {EXIT_FATAL}: shards 0-1 closed with 4014: {PORTAL_FIX}"
            in (lines[0])
        )
    finally:
        await fake.close()


async def test_readyz_names_the_refused_shard_while_others_run(tmp_path: Path) -> None:
    fake = await FakeGatewayProc.start(shards=2)
    try:
        sup = await SupervisorProc.start(fake, tmp_path, "--shards", "2")
        try:
            await sup.wait_status(lambda d: all(s["state"] == "connected" for s in d["shards"]))
            await fake.fault(kind="close", shard_id=1, code=4004)
            await wait_fake(fake, lambda s: s["closes_by_code"].get("4004", 0) >= 1)
            doc = await sup.wait_status(lambda d: d["supervisor"]["stopped_for_good"] is not None)
            assert doc["shards"][0]["state"] == "connected"
            async with sup.http.get(sup.url + "/readyz") as resp:
                assert resp.status == 503
                body = await resp.text()
            assert body == (
                "not ready: stopped for good: shard 1 closed with 4004: the token is wrong or "
                "was reset: get a new one from the Discord Developer Portal (your "
                "application's Bot page, Reset Token) and start again\n"
            )
            assert sup.proc.returncode is None
        finally:
            await sup.close()
    finally:
        await fake.close()

"""Issue 14's burst against the real fake gateway and real processes: 4 workers each send
into 4 channels at once, far above the fake's lowered global limit (20/s) and its short
message bucket (5 per 1 s); the fake's own counters are the judge. First one supervisor
(limits shared over IPC), then two supervisors on one bot sharing them through a real
redis-server given as ``--identify-limiter``."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.multihost.conftest import redis_server  # noqa: F401 - the fixture
from tests.multihost.redis_server import RedisServer
from tests.rest.burst import handler_args
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

WORKERS = 4
PER_CHANNEL = 4
GLOBAL_LIMIT = 20
MESSAGE_BUCKET = "5/1"
# 4 workers x 4 channels x 4 = 64 sends: over 3 s of the global limit, and each channel's
# 16 take 3 windows of its bucket. Both bind.
FAKE_FLAGS = ("--rest-global-limit", str(GLOBAL_LIMIT), "--rest-message-bucket", MESSAGE_BUCKET)


async def get(fake: FakeGatewayProc, path: str) -> Any:
    async with fake.http.get(fake.url + path) as resp:
        resp.raise_for_status()
        return await resp.json()


async def four_channels(fake: FakeGatewayProc) -> list[str]:
    """A text channel of each of four guilds of the fake's world, found by a user speaking
    in each: through the control API, so that no request of the test's own counts against
    the bot's global limit at the fake."""
    channels = []
    for shard in range(4):
        guild = (await get(fake, f"/_fake/guilds?num_shards=4&shard_id={shard}"))[0]
        body = {"t": "MESSAGE_CREATE", "content": "hello", "guild_id": guild}
        async with fake.http.post(fake.url + "/_fake/dispatch", json=body) as resp:
            assert resp.status == 200, await resp.text()
            channels.append((await resp.json())["channel_id"])
    return channels


def plan(folder: Path, channels: list[str], *, wait_for_go: bool = False) -> None:
    """What tests.rest.burst_handler sends (it reads ``burst.json`` next to the JSONL)."""
    folder.mkdir(exist_ok=True)
    doc = {"channels": channels, "per_channel": PER_CHANNEL, "wait_for_go": wait_for_go}
    (folder / "burst.json").write_bytes(msgspec.json.encode(doc))


def outcomes(folders: list[Path]) -> dict[str, str]:
    """What each worker's burst ended with (its handler writes ``done-<first shard>``)."""
    return {p.name: p.read_text() for f in folders for p in f.glob("done-*")}


async def start_bursts(folders: list[Path], sups: list[SupervisorProc]) -> None:
    """Once every shard is connected: the supervisors' own requests (discovery) are long
    done, and the bursts of several supervisors overlap."""
    for sup in sups:
        await sup.wait_status(all_connected, 60.0)
    for folder in folders:
        (folder / "go").touch()


async def wait_outcomes(folders: list[Path], sups: list[SupervisorProc]) -> dict[str, str]:
    deadline = time.monotonic() + 90.0
    while len(outcomes(folders)) < WORKERS and time.monotonic() < deadline:
        assert all(s.proc.returncode is None for s in sups), sups[0].stderr.read_text()[-3000:]
        await asyncio.sleep(0.1)
    return outcomes(folders)


async def assert_clean_and_in_order(fake: FakeGatewayProc, channels: list[str]) -> None:
    rest = await get(fake, "/_fake/rest")
    sent = rest["by_route"]["POST /channels/{channel_id}/messages"]
    assert sent == WORKERS * len(channels) * PER_CHANNEL, rest
    assert (rest["limit_violations"], rest["global_violations"], rest["rate_limited"]) == (
        0,
        0,
        0,
    ), rest
    for channel in channels:
        seen: dict[str, list[int]] = collections.defaultdict(list)
        for message in await get(fake, f"/_fake/messages?channel_id={channel}"):
            if not message["author"].get("bot"):
                continue  # the user's "hello" that found the channel
            tag, i = message["content"].split(":")
            seen[tag].append(int(i))
        assert seen == {str(w): list(range(PER_CHANNEL)) for w in range(WORKERS)}


async def test_four_worker_processes_burst_into_the_fake_without_a_violation(
    tmp_path: Path,
) -> None:
    fake = await FakeGatewayProc.start(shards=WORKERS, event_rate=0.0, extra=FAKE_FLAGS)
    try:
        channels = await four_channels(fake)
        plan(tmp_path, channels, wait_for_go=True)
        sup = await SupervisorProc.start(
            fake,
            tmp_path,
            "--shards", str(WORKERS),
            *handler_args(GLOBAL_LIMIT),
        )  # fmt: skip
        try:
            await start_bursts([tmp_path], [sup])
            done = await wait_outcomes([tmp_path], [sup])
        finally:
            await sup.close()
        assert done == {f"done-{w}": "ok" for w in range(WORKERS)}
        await assert_clean_and_in_order(fake, channels)
    finally:
        await fake.close()


async def test_two_supervisors_burst_into_the_fake_sharing_limits_through_redis(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    fake = await FakeGatewayProc.start(shards=WORKERS, event_rate=0.0, extra=FAKE_FLAGS)
    homes = [tmp_path / "host0", tmp_path / "host1"]
    sups: list[SupervisorProc] = []
    try:
        channels = await four_channels(fake)
        for home in homes:
            plan(home, channels, wait_for_go=True)

        async def host(index: int) -> SupervisorProc:
            sup = await SupervisorProc.start(
                fake,
                homes[index],
                "--total-shards", str(WORKERS),
                "--identify-limiter", redis_server.url,
                *handler_args(GLOBAL_LIMIT),
                env={"SHARDMGR_HOST_INDEX": str(index), "SHARDMGR_HOST_COUNT": "2"},
                name=f"host{index}",
            )  # fmt: skip
            sups.append(sup)
            return sup

        await asyncio.gather(host(0), host(1))
        await start_bursts(homes, sups)
        done = await wait_outcomes(homes, sups)
        assert done == {f"done-{w}": "ok" for w in range(WORKERS)}
        await assert_clean_and_in_order(fake, channels)
    finally:
        for sup in sups:
            await sup.close()
        await fake.close()

"""Issue 14's end-to-end check: ``shardmgr start --handler examples.pingpong:Bot --intents
all`` from the repository root, 8 shards in 4 worker processes against the real fake
gateway; users' ``!ping`` and ``/ping`` injected through ``POST /_fake/dispatch``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

SHARDS = 8
PINGS = 6  # two rounds over the first shards' guilds: several guilds, channels and workers
SLASH = 3


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def get(fake: FakeGatewayProc, path: str) -> Any:
    async with fake.http.get(fake.url + path) as resp:
        resp.raise_for_status()
        return await resp.json()


async def dispatch(fake: FakeGatewayProc, **body: Any) -> dict[str, Any]:
    async with fake.http.post(fake.url + "/_fake/dispatch", json=body) as resp:
        assert resp.status == 200, await resp.text()
        doc: dict[str, Any] = await resp.json()
        return doc


async def guild_of_each_shard(fake: FakeGatewayProc) -> list[str]:
    return [
        (await get(fake, f"/_fake/guilds?num_shards={SHARDS}&shard_id={s}"))[0]
        for s in range(SHARDS)
    ]


async def pongs_to(fake: FakeGatewayProc, ping: dict[str, Any]) -> list[dict[str, Any]]:
    messages = await get(fake, f"/_fake/messages?channel_id={ping['channel_id']}")
    return [
        m
        for m in messages
        if m["content"] == "pong"
        and (m.get("message_reference") or {}).get("message_id") == ping["message_id"]
    ]


async def test_every_ping_gets_exactly_one_pong_and_every_slash_ping_one_callback(
    tmp_path: Path,
) -> None:
    fake = await FakeGatewayProc.start(shards=SHARDS, max_concurrency=4, event_rate=2.0)
    try:
        sup = await SupervisorProc.start(
            fake,
            tmp_path,
            "--shards", str(SHARDS),
            "--shards-per-worker", "2",
            "--handler", "examples.pingpong:Bot",
            "--intents", "all",
            # Only the working directory (the repository root) puts examples/ on the path.
            env={"PYTHONPATH": ""},
        )  # fmt: skip
        try:
            await sup.wait_status(all_connected, 60.0)
            # Shard 0's worker registers /ping at READY: wait for it, so that the
            # interactions carry the registered command's id.
            await eventually(lambda: has_route(fake, "PUT /applications/{application_id}/commands"))
            guilds = await guild_of_each_shard(fake)
            pings = [
                await dispatch(
                    fake, t="MESSAGE_CREATE", content="!ping", guild_id=guilds[i * 3 % SHARDS]
                )
                for i in range(PINGS)
            ]
            slashes = [
                await dispatch(fake, t="INTERACTION_CREATE", command="ping", guild_id=guilds[s])
                for s in (1, 4, 7)[:SLASH]
            ]
            assert len({p["channel_id"] for p in pings}) > 1
            assert len({p["shard_id"] for p in pings}) > 1

            async def all_answered() -> bool:
                replies = [await pongs_to(fake, p) for p in pings]
                done = {i["id"] for i in await get(fake, "/_fake/interactions") if i["callbacks"]}
                return all(replies) and {s["interaction_id"] for s in slashes} <= done

            await eventually(all_answered)
            rest = await get(fake, "/_fake/rest")
            assert rest["by_route"]["POST /channels/{channel_id}/messages"] == PINGS
            for ping in pings:
                (pong,) = await pongs_to(fake, ping)
                assert pong["author"]["bot"] is True
            interactions = {i["id"]: i for i in await get(fake, "/_fake/interactions")}
            for slash in slashes:
                (callback,) = interactions[slash["interaction_id"]]["callbacks"]
                assert callback["type"] == 4 and callback["data"]["content"] == "pong"
            assert (rest["rate_limited"], rest["limit_violations"]) == (0, 0)
            assert (await sup.status())["shards"] and sup.proc.returncode is None
            await _the_whole_bot_answers(fake, guilds)
        finally:
            await sup.close()
    finally:
        await fake.close()


async def has_route(fake: FakeGatewayProc, route: str) -> bool:
    return bool((await get(fake, "/_fake/rest"))["by_route"].get(route))


async def replies_to(fake: FakeGatewayProc, said: dict[str, Any]) -> list[str]:
    messages = await get(fake, f"/_fake/messages?channel_id={said['channel_id']}")
    return [
        m["content"]
        for m in messages
        if (m.get("message_reference") or {}).get("message_id") == said["message_id"]
    ]


async def _the_whole_bot_answers(fake: FakeGatewayProc, guilds: list[str]) -> None:
    """Issue 16: ``!guilds`` counts every worker's guilds (the fake's total), and ``!where``
    names the shard and the worker of a guild, whichever worker reads the command."""
    total = int((await get(fake, f"/_fake/guilds?num_shards={SHARDS}"))["guilds"])
    asked = await dispatch(fake, t="MESSAGE_CREATE", content="!guilds", guild_id=guilds[0])
    # A guild of shard 7 (worker 3, 2 shards a worker), asked in a guild of shard 0 (worker 0).
    where = await dispatch(
        fake, t="MESSAGE_CREATE", content=f"!where {guilds[7]}", guild_id=guilds[0]
    )

    async def answered() -> bool:
        return bool(await replies_to(fake, asked)) and bool(await replies_to(fake, where))

    await eventually(answered)
    assert await replies_to(fake, asked) == [f"guilds: {total}"]
    assert await replies_to(fake, where) == [f"guild {guilds[7]}: shard 7, worker 3"]

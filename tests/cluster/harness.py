"""A bot of several workers against the fake, driven by ``!`` messages through
``/_fake/dispatch`` and observed through what ``tests.cluster.cluster_bot`` records."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from tests.cluster.cluster_bot import OUT_ENV
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc

HANDLER = "tests.cluster.cluster_bot:Bot"
INTENTS = "GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT,GUILD_VOICE_STATES,GUILD_MEMBERS"


def bot_env(out: Path, **extra: str) -> dict[str, str]:
    return {OUT_ENV: str(out), "SHARDMGR_CALL_TIMEOUT_S": "6", **extra}


def bot_args(*extra: str) -> tuple[str, ...]:
    return ("--handler", HANDLER, "--intents", INTENTS, *extra)


class Bot:
    """The fake plus the records file the handler writes."""

    def __init__(self, fake: FakeGatewayProc, out: Path, num_shards: int) -> None:
        self.fake = fake
        self.out = out
        self.num_shards = num_shards

    async def guilds_of_shard(self, shard_id: int) -> list[str]:
        url = f"{self.fake.url}/_fake/guilds?num_shards={self.num_shards}&shard_id={shard_id}"
        async with self.fake.http.get(url) as resp:
            resp.raise_for_status()
            return list(await resp.json())

    async def total_guilds(self) -> int:
        url = f"{self.fake.url}/_fake/guilds?num_shards={self.num_shards}"
        async with self.fake.http.get(url) as resp:
            resp.raise_for_status()
            return int((await resp.json())["guilds"])

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    async def say(self, content: str, guild_id: str) -> None:
        body = {"t": "MESSAGE_CREATE", "content": content, "guild_id": guild_id}
        async with self.fake.http.post(self.fake.url + "/_fake/dispatch", json=body) as resp:
            resp.raise_for_status()

    async def wait_record(self, key: str, value: Any, within_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            for doc in self.records():
                if doc.get(key) == value:
                    return doc
            await asyncio.sleep(0.05)
        raise AssertionError(f"no record with {key}={value!r} in {within_s}s: {self.records()}")

    async def ask(self, content: str, guild_id: str, within_s: float = 30.0) -> dict[str, Any]:
        """Say ``content`` in ``guild_id`` and return what the handler recorded for it."""
        await self.say(content, guild_id)
        return await self.wait_record("content", content, within_s)


async def worker_pids(sup: SupervisorProc) -> dict[int, int]:
    doc = await sup.status()
    return {w["id"]: w["pid"] for w in doc["workers"]}

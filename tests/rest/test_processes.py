"""Real ``shardmgr start`` with real worker processes: their REST bursts share the global
limit and the channels' buckets through the supervisor over IPC (the fake gateway runs the
shards; this folder's server answers REST and counts violations)."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import msgspec
import pytest

from tests.rest.burst import handler_args
from tests.rest.discord_server import DiscordServer
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WORKERS = 4
CHANNELS = ["201", "202", "203", "204"]
PER_CHANNEL = 3
GLOBAL_LIMIT = 20


def outcomes(folder: Path) -> dict[str, str]:
    """What each worker's burst ended with (its handler writes ``done-<first shard>``)."""
    return {p.name: p.read_text() for p in folder.glob("done-*")}


async def test_worker_processes_share_the_global_limit_and_buckets(tmp_path: Path) -> None:
    fake = await FakeGatewayProc.start(shards=WORKERS)
    server = DiscordServer(GLOBAL_LIMIT, 5, 1.0, token=fake.token, upstream=fake.api_base)
    await server.start()
    (tmp_path / "burst.json").write_bytes(
        msgspec.json.encode({"channels": CHANNELS, "per_channel": PER_CHANNEL})
    )
    try:
        sup = await SupervisorProc.start(
            fake,
            tmp_path,
            "--shards", str(WORKERS),
            *handler_args(GLOBAL_LIMIT),
            "--api-base", server.api_base,
        )  # fmt: skip
        try:
            for _ in range(600):
                if len(outcomes(tmp_path)) == WORKERS:
                    break
                await asyncio.sleep(0.1)
        finally:
            await sup.close()
    finally:
        await server.stop()
        await fake.close()
    assert outcomes(tmp_path) == {f"done-{w}": "ok" for w in range(WORKERS)}
    c = server.counters
    arrivals = [round(a - server.arrivals[0], 3) for a in server.arrivals]
    assert (c["limit_violations"], c["global_violations"], c["rate_limited"]) == (0, 0, 0), (
        f"arrivals: {arrivals}"
    )
    for channel in CHANNELS:
        seen: dict[str, list[int]] = collections.defaultdict(list)
        for message in server.messages[channel]:
            tag, i = message["content"].split(":")
            seen[tag].append(int(i))
        assert seen == {str(w): list(range(PER_CHANNEL)) for w in range(WORKERS)}

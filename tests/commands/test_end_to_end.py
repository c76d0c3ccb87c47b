"""Operator commands through a real `shardmgr start` (real workers, `--compress payload`)
against the fake gateway subprocess: HTTP routes and `shardmgr presence`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.supervisor.harness import (
    FakeGatewayProc,
    SupervisorProc,
    all_connected,
    delivered_seqs,
    wait_fake,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = "e2e-admin-secret"
AUTH = {"Authorization": f"Bearer {SECRET}"}
SHARDS = 2


@contextlib.asynccontextmanager
async def started(tmp_path: Path) -> AsyncIterator[tuple[FakeGatewayProc, SupervisorProc]]:
    # A low threshold so that real messages arrive payload-compressed.
    fake = await FakeGatewayProc.start(shards=SHARDS, extra=("--payload-compress-threshold", "100"))
    try:
        sup = await SupervisorProc.start(
            fake,
            tmp_path,
            "--compress",
            "payload",
            "--shards-per-worker",
            "1",
            env={"SHARDMGR_ADMIN_SECRET": SECRET},
        )
        try:
            await sup.wait_status(all_connected)
            yield fake, sup
        finally:
            await sup.close()
    finally:
        await fake.close()


async def test_compress_payload_shards_connect_and_deliver_events(tmp_path: Path) -> None:
    async with started(tmp_path) as (fake, sup):
        events = tmp_path / "events.jsonl"
        await wait_fake(fake, lambda _: len(delivered_seqs(events)) == SHARDS)
        doc = await sup.status()
        assert all(s["state"] == "connected" for s in doc["shards"])
        assert not any("bad payload" in line for line in sup.stderr.read_text().splitlines())


async def test_presence_route_is_refused_without_the_secret(tmp_path: Path) -> None:
    async with started(tmp_path) as (fake, sup):
        async with sup.http.post(sup.url + "/presence", json={"status": "dnd"}) as resp:
            assert resp.status == 403
        assert (await fake.stats())["presence_by_shard"] == {}


async def test_presence_route_reaches_every_shard(tmp_path: Path) -> None:
    async with started(tmp_path) as (fake, sup):
        body = {"status": "dnd", "activities": [{"name": "upgrades", "type": 0}], "afk": False}
        async with sup.http.post(sup.url + "/presence", json=body, headers=AUTH) as resp:
            assert resp.status == 202, await resp.text()
            assert await resp.json() == {"presence": "dnd", "shards": 2, "planned": 2}
        await wait_fake(fake, lambda s: s["presence_by_shard"] == {"0": "dnd", "1": "dnd"})


async def test_send_route_reaches_only_that_shard(tmp_path: Path) -> None:
    async with started(tmp_path) as (fake, sup):
        d = {"since": None, "activities": [], "status": "idle", "afk": False}
        url = sup.url + "/shards/1/send"
        async with sup.http.post(url, json={"op": 3, "d": d}, headers=AUTH) as resp:
            assert resp.status == 202, await resp.text()
        await wait_fake(fake, lambda s: s["presence_by_shard"] == {"1": "idle"})


async def test_presence_cli_sets_every_shards_status(tmp_path: Path) -> None:
    async with started(tmp_path) as (fake, sup):
        env = {**os.environ, "SHARDMGR_ADMIN_SECRET": SECRET}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shardmgr",
            "presence",
            "--status",
            "idle",
            "--activity",
            "the tests",
            "--activity-type",
            "watching",
            "--http",
            sup.url.removeprefix("http://"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert out.decode() == "presence idle, watching 'the tests' sent to 2 of 2 shards\n"
        await wait_fake(fake, lambda s: s["presence_by_shard"] == {"0": "idle", "1": "idle"})

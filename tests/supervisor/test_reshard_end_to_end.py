"""Growing without downtime (issue 19): `shardmgr start` against the fake gateway under
event traffic reshards in the background and switches over, the handler never waiting more
than 2 s for an event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.reshard import longest_gaps
from tests.supervisor.harness import (
    FakeGatewayProc,
    SupervisorProc,
    all_connected,
    gaps,
    wait_fake,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SECRET = "reshard-admin-secret"
MAX_GAP_S = 2.0


async def _start(tmp_path: Path) -> tuple[FakeGatewayProc, SupervisorProc]:
    fake = await FakeGatewayProc.start(shards=8, max_concurrency=1, event_rate=20.0)
    try:
        sup = await SupervisorProc.start(
            fake,
            tmp_path,
            "--shards",
            "auto",
            "--handler",
            "bench.timed_handler:handler",
            env={"SHARDMGR_ADMIN_SECRET": SECRET, "SHARDMGR_SESSIONS_SAVE_INTERVAL_S": "0.1"},
        )
    except BaseException:
        await fake.close()
        raise
    return fake, sup


async def _post(sup: SupervisorProc, path: str) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {SECRET}"}
    async with sup.http.post(sup.url + path, headers=headers) as resp:
        return resp.status, await resp.json()


async def _recommend(fake: FakeGatewayProc, **body: int) -> None:
    async with fake.http.post(fake.url + "/_fake/recommend", json=body) as resp:
        resp.raise_for_status()


async def _cli_reshard(sup: SupervisorProc) -> tuple[int, str]:
    """`shardmgr reshard --http ADDR`: its exit status and first line."""
    env = {**os.environ, "SHARDMGR_ADMIN_SECRET": SECRET}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shardmgr",
        "reshard",
        "--http",
        sup.url.removeprefix("http://"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return await proc.wait(), out.decode().strip()


async def _saved_reshard(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "state" / "sessions.json"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            doc = json.loads(path.read_text())
            if doc.get("reshard"):
                assert doc["total_shards"] == 8
                return dict(doc["reshard"])
        await asyncio.sleep(0.05)
    raise AssertionError("the state file never showed the reshard")


def _resharded(doc: dict[str, Any]) -> bool:
    sup = doc["supervisor"]
    return (
        sup["total_shards"] == 16
        and sup["reshard"]["phase"] == "idle"
        and len(doc["shards"]) == 16
        and all_connected(doc)
    )


def _deliveries(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


async def _reshard_and_check(
    fake: FakeGatewayProc, sup: SupervisorProc, tmp_path: Path, since: float, closed: set[int]
) -> dict[str, Any]:
    """Waits for the switch, stops the supervisor, and checks delivery throughout: no gap
    over 2 s for any guild (but those of the old shards in ``closed``), no seq lost on an
    old shard before its switch."""
    doc = await sup.wait_status(_resharded, 90.0)
    async with sup.http.get(sup.url + "/metrics") as resp:
        metrics = await resp.text()
    # the per-shard metrics follow the set that delivers: the new one, every shard connected
    assert "shardmgr_shards_connected 16.0" in metrics
    assert 'shardmgr_reshard_total{outcome="succeeded"} 1.0' in metrics
    assert "shardmgr_reshard_phase 0.0" in metrics
    # a little traffic after the switch: the new set delivers on its own
    await asyncio.sleep(1.0)
    until = time.time()
    await sup.close()
    events = [e for e in _deliveries(tmp_path) if e["t"] not in ("READY", "GUILD_CREATE")]
    old = [e for e in events if e["of"] == 8 and e["shard"] not in closed]
    new = [e for e in events if e["of"] == 16]
    assert old and new
    first_new = min(e["at"] for e in new)
    _, longest = longest_gaps(
        events, since=since, until=until, new_total=16, old_total=8, skip=closed
    )
    assert longest <= MAX_GAP_S, longest
    # every old shard delivered right up to the switch, and nothing in between was lost
    for sid in {e["shard"] for e in old}:
        seqs = [e["seq"] for e in old if e["shard"] == sid and e["seq"] is not None]
        assert gaps(seqs) == [], (sid, gaps(seqs))
        assert max(e["at"] for e in old if e["shard"] == sid) >= first_new - MAX_GAP_S
    log = sup.stderr.read_text()
    assert "does not seem to honour sharding" not in log
    # the new set delivered nothing before the switch (it held its events)
    switch = next(line for line in log.splitlines() if "every new shard is ready" in line)
    assert first_new >= _log_time(switch)
    return doc


def _log_time(line: str) -> float:
    stamp = line.split()[0].removesuffix("Z")
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


async def test_a_raised_recommendation_reshards_8_to_16_without_a_gap(tmp_path: Path) -> None:
    fake, sup = await _start(tmp_path)
    try:
        await sup.wait_status(all_connected)
        assert await _cli_reshard(sup) == (
            0,
            "no reshard needed: 8 shards is what Discord recommends",
        )
        await _recommend(fake, shards=16)
        since = time.time()
        status, body = await _post(sup, "/reshard")
        assert (status, body) == (202, {"from": 8, "to": 16})
        status, _ = await _post(sup, "/reshard")
        assert status == 409
        # the state file says a reshard runs (its sessions stay the old plan's)
        saved = await _saved_reshard(tmp_path)
        assert saved == {"phase": "starting", "from": 8, "to": 16}
        doc = await _reshard_and_check(fake, sup, tmp_path, since, closed=set())
        reshard = doc["supervisor"]["reshard"]
        assert reshard["last"]["outcome"] == "succeeded"
        # the held events of the last overlap_s before the switch: delivered twice, counted
        assert reshard["duplicates"] > 0
        stats = await wait_fake(fake, lambda s: s["connections_open"] == 0)
        assert stats["identifies"] == 8 + 16
        assert stats["identify_violations"] == 0
        assert stats["client_closes_by_code"].get("1000", 0) >= 8  # the old set's close
        # the budget the supervisor knows is what the fake has left, not the figure read
        # before the new set identified
        assert doc["supervisor"]["session_start_remaining"] == stats["session_start_remaining"]
    finally:
        await sup.close()
        await fake.close()


async def test_a_4011_reshards_in_the_background(tmp_path: Path) -> None:
    fake, sup = await _start(tmp_path)
    try:
        await sup.wait_status(all_connected)
        async with fake.http.get(fake.url + "/_fake/guilds?num_shards=8") as resp:
            at_8 = (await resp.json())["per_shard"]
        async with fake.http.get(fake.url + "/_fake/guilds?num_shards=16") as resp:
            at_16 = (await resp.json())["per_shard"]
        # the new count fits, shard 1 of the old one does not
        limit = max(at_16)
        assert limit < at_8[1], (at_8, at_16)
        await _recommend(fake, shards=16, max_guilds_per_shard=limit)
        # shard 1 loses its session: its next identify is closed with 4011
        since = time.time()
        await fake.fault(kind="invalid_session", shard_id=1, resumable=False)
        await _reshard_and_check(fake, sup, tmp_path, since, closed={1})
        stats = await wait_fake(fake, lambda s: s["connections_open"] == 0)
        assert stats["closes_by_code"].get("4011") == 1
        assert stats["identifies"] == 8 + 16
        assert stats["identify_violations"] == 0
    finally:
        await sup.close()
        await fake.close()


async def test_a_new_set_that_fails_leaves_the_old_plan_running_and_says_why(
    tmp_path: Path,
) -> None:
    fake, sup = await _start(tmp_path)
    try:
        await sup.wait_status(all_connected)
        # Discord still recommends 8, and no shard may hold more than 5 guilds: a 9-shard
        # set (one more shard after a 4011) is closed with 4011 too.
        await _recommend(fake, shards=8, max_guilds_per_shard=5)
        await fake.fault(kind="invalid_session", shard_id=1, resumable=False)
        doc = await sup.wait_status(
            lambda d: (d["supervisor"]["reshard"]["last"] or {}).get("outcome") == "failed"
        )
        last = doc["supervisor"]["reshard"]["last"]
        assert (last["from"], last["to"], last["trigger"]) == (8, 9, "sharding_required")
        assert "closed with 4011 too" in last["reason"]
        doc = await sup.wait_status(lambda d: d["supervisor"]["reshard"]["phase"] == "idle")
        assert doc["supervisor"]["total_shards"] == 8
        assert [s["id"] for s in doc["shards"] if s["state"] == "connected"] == [
            0,
            2,
            3,
            4,
            5,
            6,
            7,
        ]
        # the new set's workers are gone, none of them still counted
        assert len(doc["workers"]) == len({w["id"] for w in doc["workers"]})
        stats = await wait_fake(fake, lambda s: s["connections_open"] == 7)
        assert stats["identify_violations"] == 0
    finally:
        await sup.close()
        await fake.close()


async def test_a_stop_during_a_reshard_closes_both_sets_cleanly(tmp_path: Path) -> None:
    fake, sup = await _start(tmp_path)
    try:
        await sup.wait_status(all_connected)
        await _recommend(fake, shards=16)
        status, _ = await _post(sup, "/reshard")
        assert status == 202
        await sup.wait_status(lambda d: d["supervisor"]["reshard"].get("ready", 0) >= 2)
        sup.proc.send_signal(signal.SIGTERM)
        assert await sup.wait_exit() == 0
        await wait_fake(fake, lambda s: s["connections_open"] == 0)
        # every session of both sets was ended by its shard (1000): none left to time out
        ended = {s["ended_reason"] for s in await fake.sessions()}
        assert ended == {"client_close_1000"}
        assert "Traceback" not in sup.stderr.read_text()
    finally:
        await sup.close()
        await fake.close()

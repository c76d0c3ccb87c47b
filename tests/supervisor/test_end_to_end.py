"""`shardmgr start` as a real process, with real workers, against the fake gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.supervisor.harness import (
    FakeGatewayProc,
    SupervisorProc,
    all_connected,
    delivered_seqs,
    gaps,
    wait_fake,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def _run(
    tmp_path: Path, fake_kw: dict[str, object], *args: str, env: dict[str, str] | None = None
) -> tuple[FakeGatewayProc, SupervisorProc]:
    fake = await FakeGatewayProc.start(**fake_kw)  # type: ignore[arg-type]
    try:
        sup = await SupervisorProc.start(fake, tmp_path, *args, env=env)
    except BaseException:
        await fake.close()
        raise
    return fake, sup


async def test_auto_shards_start_within_the_identify_windows_without_violations(
    tmp_path: Path,
) -> None:
    fake, sup = await _run(tmp_path, {"shards": 6, "max_concurrency": 4}, "--shards", "auto")
    try:
        doc = await sup.wait_status(all_connected)
        assert doc["supervisor"]["total_shards"] == 8  # 6 rounded up to a multiple of 4
        assert [s["id"] for s in doc["shards"]] == list(range(8))
        assert any(line.startswith("plan: 8 of 8 shards") for line in sup.stdout), sup.stdout
        stats = await fake.stats()
        assert stats["identify_violations"] == 0
        assert stats["identifies"] == 8
        async with sup.http.get(sup.url + "/readyz") as resp:
            assert resp.status == 200
        async with sup.http.get(sup.url + "/healthz") as resp:
            assert resp.status == 200
        async with sup.http.get(sup.url + "/metrics") as resp:
            assert resp.status == 200 and "shardmgr_" in await resp.text()
    finally:
        await sup.close()
        await fake.close()


async def test_explicit_shard_count_overrides_the_recommendation(tmp_path: Path) -> None:
    fake, sup = await _run(tmp_path, {"shards": 6, "max_concurrency": 2}, "--shards", "3")
    try:
        doc = await sup.wait_status(all_connected)
        assert doc["supervisor"]["total_shards"] == 3
        assert len(doc["shards"]) == 3
        assert (await fake.stats())["identify_violations"] == 0
        status = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shardmgr",
            "status",
            "--http",
            sup.url.removeprefix("http://"),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(status.communicate(), 30.0)
        assert status.returncode == 0
        assert "3/3 shards connected" in out.decode()
        rows = [line.split() for line in out.decode().splitlines()]
        assert sum(1 for r in rows if r[2:3] == ["connected"]) == 3
    finally:
        await sup.close()
        await fake.close()


async def test_shard_range_runs_only_its_slice(tmp_path: Path) -> None:
    fake, sup = await _run(
        tmp_path,
        {"shards": 8, "max_concurrency": 1},
        "--total-shards",
        "8",
        "--shard-ids",
        "2-4",
        "--shards-per-worker",
        "2",
    )
    try:
        doc = await sup.wait_status(all_connected)
        assert [s["id"] for s in doc["shards"]] == [2, 3, 4]
        assert [w["shards"] for w in doc["workers"]] == [[2, 3], [4]]
        sessions = await fake.sessions()
        assert sorted(s["shard_id"] for s in sessions) == [2, 3, 4]
        assert {s["num_shards"] for s in sessions} == {8}
    finally:
        await sup.close()
        await fake.close()


async def test_killed_worker_resumes_with_no_new_identify_and_no_lost_event(
    tmp_path: Path,
) -> None:
    fake, sup = await _run(
        tmp_path,
        {"shards": 4, "max_concurrency": 2, "event_rate": 30.0},
        "--shards",
        "4",
        "--shards-per-worker",
        "2",
    )
    try:
        doc = await sup.wait_status(all_connected)
        before = await fake.stats()
        victim = doc["workers"][0]
        os.kill(victim["pid"], signal.SIGKILL)
        await sup.wait_status(
            lambda d: d["workers"][0]["pid"] not in (None, victim["pid"]) and all_connected(d)
        )
        after = await wait_fake(fake, lambda s: s["resumes"] >= before["resumes"] + 2)
        assert after["identifies"] == before["identifies"]
        # Let events flow on the resumed sessions, then check nothing was skipped.
        await wait_fake(fake, lambda s: s["dispatches_sent"] > after["dispatches_sent"] + 100)
        await sup.close()
        seqs = delivered_seqs(tmp_path / "events.jsonl")
        for shard in victim["shards"]:
            assert seqs.get(shard), f"shard {shard} delivered nothing"
            assert gaps(seqs[shard]) == [], f"shard {shard} lost events"
    finally:
        await sup.close()
        await fake.close()


async def test_stopped_worker_dumps_stacks_is_replaced_and_resumes(tmp_path: Path) -> None:
    fake, sup = await _run(
        tmp_path,
        {"shards": 2, "max_concurrency": 2},
        "--shards",
        "2",
        "--workers",
        "2",
        env={"SHARDMGR_PING_TIMEOUT_S": "1.5"},
    )
    try:
        doc = await sup.wait_status(all_connected)
        before = await fake.stats()
        victim = doc["workers"][1]
        os.kill(victim["pid"], signal.SIGSTOP)
        doc = await sup.wait_status(
            lambda d: d["workers"][1]["pid"] not in (None, victim["pid"]) and all_connected(d)
        )
        assert "hung" in doc["workers"][1]["last_exit"]
        after = await wait_fake(fake, lambda s: s["resumes"] > before["resumes"])
        assert after["identifies"] == before["identifies"]
        log = sup.stderr.read_text()
        # The faulthandler dump of the hung worker is in the supervisor's log.
        assert "stopped answering pings" in log and "most recent call first" in log
    finally:
        await sup.close()
        await fake.close()


async def test_rolling_restart_replaces_every_worker_without_identify_or_lost_event(
    tmp_path: Path,
) -> None:
    fake, sup = await _run(
        tmp_path,
        {"shards": 4, "max_concurrency": 2, "event_rate": 30.0},
        "--shards",
        "4",
        "--shards-per-worker",
        "2",
    )
    try:
        doc = await sup.wait_status(all_connected)
        before = await fake.stats()
        old_pids = {w["pid"] for w in doc["workers"]}
        os.kill(sup.proc.pid, signal.SIGHUP)
        await sup.wait_status(
            lambda d: (
                not ({w["pid"] for w in d["workers"]} & old_pids)
                and not d["supervisor"]["rolling_restart"]
                and all_connected(d)
            )
        )
        after = await fake.stats()
        assert after["identifies"] == before["identifies"]
        assert after["resumes"] >= before["resumes"] + 4
        await wait_fake(fake, lambda s: s["dispatches_sent"] > after["dispatches_sent"] + 100)
        await sup.close()
        seqs = delivered_seqs(tmp_path / "events.jsonl")
        for shard in range(4):
            assert seqs.get(shard) and gaps(seqs[shard]) == [], f"shard {shard} lost events"
    finally:
        await sup.close()
        await fake.close()


async def test_sigterm_closes_every_shard_and_exits_zero(tmp_path: Path) -> None:
    fake, sup = await _run(tmp_path, {"shards": 2, "max_concurrency": 1}, "--shards", "2")
    try:
        await sup.wait_status(all_connected)
        sup.proc.send_signal(signal.SIGTERM)
        assert await sup.wait_exit(15.0) == 0
        stats = await wait_fake(fake, lambda s: s["connections_open"] == 0, 10.0)
        # Default stop mode ends the sessions: the bot goes offline at once.
        assert stats["client_closes_by_code"].get("1000") == 2
        assert not (tmp_path / "state" / "sessions.json").exists()
    finally:
        await sup.close()
        await fake.close()


async def test_keep_sessions_stop_then_start_resumes_without_identify(tmp_path: Path) -> None:
    fake, sup = await _run(
        tmp_path, {"shards": 4, "max_concurrency": 2}, "--shards", "4", "--shards-per-worker", "2"
    )
    try:
        await sup.wait_status(all_connected)
        stop = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shardmgr",
            "stop",
            "--keep-sessions",
            "--state-dir",
            str(tmp_path / "state"),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(stop.communicate(), 30.0)
        assert stop.returncode == 0 and b"sessions saved" in out
        assert await sup.wait_exit(15.0) == 0
        await sup.close()
        assert (tmp_path / "state" / "sessions.json").exists()
        before = await fake.stats()
        sup = await SupervisorProc.start(
            fake, tmp_path, "--shards", "4", "--shards-per-worker", "2", name="second"
        )
        await sup.wait_status(all_connected)
        after = await wait_fake(fake, lambda s: s["resumes"] >= before["resumes"] + 4)
        assert after["identifies"] == before["identifies"]
    finally:
        await sup.close()
        await fake.close()


async def test_sharding_required_close_replans_with_more_shards(tmp_path: Path) -> None:
    fake, sup = await _run(tmp_path, {"shards": 2, "max_concurrency": 1}, "--shards", "auto")
    try:
        doc = await sup.wait_status(all_connected)
        assert doc["supervisor"]["total_shards"] == 2
        await fake.fault(kind="close", shard_id=1, code=4011)
        doc = await sup.wait_status(
            lambda d: d["supervisor"]["total_shards"] > 2 and all_connected(d), 90.0
        )
        assert doc["supervisor"]["replans"] == 1
        assert len(doc["shards"]) == doc["supervisor"]["total_shards"]
    finally:
        await sup.close()
        await fake.close()


async def test_discovery_retries_after_429(tmp_path: Path) -> None:
    fake = await FakeGatewayProc.start(shards=1)
    try:
        await fake.rest_fault(status=429, count=2, retry_after=0.1)
        sup = await SupervisorProc.start(fake, tmp_path, "--shards", "1")
        try:
            await sup.wait_status(all_connected)
        finally:
            await sup.close()
    finally:
        await fake.close()

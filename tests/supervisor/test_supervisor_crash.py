"""Sessions survive a supervisor crash (issue 15, item 4): ``kill -9`` of the supervisor, its
workers exit without ending their sessions, and a start within the resume window resumes
every shard: the fake gateway (Discord's side, the ground truth) sees no new identify."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected, wait_fake

pytestmark = pytest.mark.integration

SHARDS = 4
ARGS = ("--shards", str(SHARDS), "--shards-per-worker", "2")


def _saved_sessions(path: Path) -> dict[str, object]:
    try:
        doc: dict[str, dict[str, object]] = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return doc["sessions"]


async def _gone(pids: list[int], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while any(_running(pid) for pid in pids):
        assert time.monotonic() < deadline, f"workers {pids} outlived their supervisor"
        await asyncio.sleep(0.05)


def _running(pid: int) -> bool:
    """Alive and not a zombie (the workers' parent is gone: nobody may reap them at once)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


async def test_a_start_after_supervisor_kill_9_resumes_every_shard_without_identify(
    tmp_path: Path,
) -> None:
    fake = await FakeGatewayProc.start(shards=SHARDS, max_concurrency=2)
    sup = second = None
    try:
        sup = await SupervisorProc.start(fake, tmp_path, *ARGS)
        doc = await sup.wait_status(all_connected)
        state = tmp_path / "state" / "sessions.json"
        deadline = time.monotonic() + 30
        while len(_saved_sessions(state)) < SHARDS:  # written without any stop
            assert time.monotonic() < deadline, "sessions never reached the state file"
            await asyncio.sleep(0.1)
        workers = [int(w["pid"]) for w in doc["workers"]]
        before = await fake.stats()

        os.kill(sup.proc.pid, signal.SIGKILL)
        await sup.wait_exit(10.0)
        await _gone(workers, 15.0)
        after_crash = await fake.stats()
        # The workers dropped their connections without a close 1000: still resumable.
        assert after_crash["client_closes_by_code"].get("1000", 0) == before[
            "client_closes_by_code"
        ].get("1000", 0)

        second = await SupervisorProc.start(fake, tmp_path, *ARGS, name="second")
        doc = await second.wait_status(all_connected)
        after = await wait_fake(fake, lambda s: s["resumes"] >= before["resumes"] + SHARDS)
        assert after["identifies"] == before["identifies"]
        assert {s["session_kind"] for s in doc["shards"]} == {"resume"}
    finally:
        for proc in (second, sup):
            if proc is not None:
                await proc.close()
        await fake.close()

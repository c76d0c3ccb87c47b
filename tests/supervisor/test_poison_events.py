"""Poison events end to end: a handler that hangs on (or exits at) one chosen event, run by
a real supervisor and real workers against the fake gateway. After two deaths at the same
(shard, seq) the successor delivers past it, the event is dead-lettered, every shard is
connected and the following events are delivered; the idle sibling shard has no suspect."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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

POISON = (0, 12)
SECRET = "poison-admin-secret"


async def _run(
    tmp_path: Path, mode: str, env: dict[str, str] | None = None
) -> tuple[FakeGatewayProc, SupervisorProc]:
    fake = await FakeGatewayProc.start(shards=2, max_concurrency=2, event_rate=20.0)
    full_env = {
        "POISON_AT": f"{POISON[0]}:{POISON[1]}",
        "POISON_MODE": mode,
        # A hang is noticed within 2 s, and the watchdog speaks well before that.
        "SHARDMGR_PING_TIMEOUT_S": "2",
        "SHARDMGR_LOOP_STALL_S": "0.5",
        **(env or {}),
    }
    try:
        sup = await SupervisorProc.start(
            fake, tmp_path,
            "--shards", "2", "--shards-per-worker", "2",
            "--handler", "tests.supervisor.poisony:poisoned",
            env=full_env,
        )  # fmt: skip
    except BaseException:
        await fake.close()
        raise
    return fake, sup


async def _dead_letters(tmp_path: Path, within_s: float = 90.0) -> list[dict[str, Any]]:
    path = tmp_path / "state" / "dead-letters.jsonl"
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().endswith(b"\n"):
            return [json.loads(line) for line in path.read_text().splitlines()]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no dead letter within {within_s} s")


async def _delivered_past_the_poison(
    tmp_path: Path, fake: FakeGatewayProc, sup: SupervisorProc
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    letters = await _dead_letters(tmp_path)
    doc = await sup.wait_status(all_connected)
    sent = (await fake.stats())["dispatches_sent"]
    await wait_fake(fake, lambda s: s["dispatches_sent"] > sent + 60)
    return letters, doc


def _check_delivery(tmp_path: Path) -> None:
    seqs = delivered_seqs(tmp_path / "events.jsonl")
    shard, seq = POISON
    assert max(seqs[shard]) > seq + 10, "events after the poison were not delivered"
    assert gaps(seqs[shard]) == [seq], "only the poison event may be missing"
    assert gaps(seqs[1]) == [], "the sibling shard lost events"


def _check_letter(letters: list[dict[str, Any]], reason: str) -> dict[str, Any]:
    assert len(letters) == 1
    letter = letters[0]
    assert (letter["shard_id"], letter["seq"]) == POISON
    assert letter["reason"] == reason
    assert isinstance(letter["t"], str) and letter["t"]
    assert letter["d"] is not None
    assert set(letter) == {"shard_id", "seq", "t", "d", "reason", "stack", "at"}
    return letter


def _suspect_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "worker died inside a handler call" in line]


async def test_a_handler_that_hangs_on_one_event_is_delivered_past_after_two_kills(
    tmp_path: Path,
) -> None:
    fake, sup = await _run(tmp_path, "hang")
    try:
        letters, doc = await _delivered_past_the_poison(tmp_path, fake, sup)
        assert doc["workers"][0]["restarts"] == 2
        letter = _check_letter(letters, "hang")
        # The watchdog's stack of the blocked loop: the handler's blocking call.
        assert "poisony.py" in letter["stack"] and "time.sleep" in letter["stack"]
        await sup.close()
        _check_delivery(tmp_path)
        log = sup.stderr.read_text()
        # Two stalls (one per hung worker), each logged once.
        assert log.count("event loop blocked") == 2
        suspects = _suspect_lines(log)
        assert len(suspects) == 2 and all("shard=0 " in line for line in suspects)
        assert "poison event dead-lettered" in log
    finally:
        await sup.close()
        await fake.close()


async def test_a_handler_that_exits_on_one_event_is_dead_lettered_and_the_sibling_is_not(
    tmp_path: Path,
) -> None:
    fake, sup = await _run(tmp_path, "exit")
    try:
        letters, doc = await _delivered_past_the_poison(tmp_path, fake, sup)
        assert doc["workers"][0]["restarts"] == 2
        letter = _check_letter(letters, "crash")
        assert letter["stack"] is None
        path = tmp_path / "state" / "dead-letters.jsonl"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        await sup.close()
        _check_delivery(tmp_path)
        # The sibling shard 1 ran in the same worker, idle: never a suspect.
        suspects = _suspect_lines(sup.stderr.read_text())
        assert len(suspects) == 2 and all("shard=0 " in line for line in suspects)
    finally:
        await sup.close()
        await fake.close()


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDMGR_")}
    env["SHARDMGR_ADMIN_SECRET"] = SECRET
    return subprocess.run(
        [sys.executable, "-m", "shardmgr", *args, "--state-dir", str(tmp_path / "state")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_replay_hands_a_dead_letter_to_the_running_handler_again(tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    fake, sup = await _run(
        tmp_path, "exit", env={"POISON_FIXED": str(fixed), "SHARDMGR_ADMIN_SECRET": SECRET}
    )
    try:
        await _dead_letters(tmp_path)
        await sup.wait_status(all_connected)
        listed = await asyncio.to_thread(_cli, tmp_path, "dead-letters", "list")
        assert listed.returncode == 0 and f"{POISON[0]}:{POISON[1]}" in listed.stdout
        fixed.touch()  # the bug is fixed
        shard, seq = POISON
        done = await asyncio.to_thread(_cli, tmp_path, "dead-letters", "replay", f"{shard}:{seq}")
        assert done.returncode == 0, done.stderr
        lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
        replayed = [x for x in lines if x.get("replayed")]
        assert [(x["shard"], x["seq"]) for x in replayed] == [POISON]
    finally:
        await sup.close()
        await fake.close()

"""What a start tells the operator: the plan's identify summary, progress lines with an
estimate every ``progress_interval_s``, and one line when every shard is ready."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from shardmgr.plan import Plan, make_plan, plural, start_summary
from shardmgr.startprogress import StartProgress
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected


def _plan(shards: int, max_concurrency: int = 1, per_worker: int = 16) -> Plan:
    return make_plan(
        shards=str(shards),
        recommended=shards,
        max_concurrency=max_concurrency,
        shards_per_worker=per_worker,
    )


@pytest.mark.parametrize(
    ("n", "noun", "text"),
    [
        (0, "worker", "0 workers"),
        (1, "worker", "1 worker"),
        (2, "identify window", "2 identify windows"),
    ],
)
def test_plural(n: int, noun: str, text: str) -> None:
    assert plural(n, noun) == text


@pytest.mark.parametrize(
    ("shards", "mc", "resuming", "text"),
    [
        (64, 16, set(), "4 identify windows to start"),
        (4, 4, set(), "1 identify window to start"),
        (64, 16, set(range(64)), "resuming all 64 shards, no identify"),
        (1, 1, {0}, "resuming 1 shard, no identify"),
        (8, 1, set(range(6)), "resuming 6 shards; 2 identify windows for the other 2"),
        (8, 4, set(range(7)), "resuming 7 shards; 1 identify window for the other 1"),
    ],
)
def test_start_summary(shards: int, mc: int, resuming: set[int], text: str) -> None:
    assert start_summary(_plan(shards, mc), resuming) == text


def test_plan_line_says_1_worker_and_1_identify_window() -> None:
    first = _plan(4, 4).describe().splitlines()[0]
    assert (
        first == "plan: 4 of 4 shards in 1 worker, max_concurrency 4 (1 identify window to start), "
        "about 42 MiB of memory"
    )


def test_plan_line_of_a_start_that_only_resumes_says_so() -> None:
    first = _plan(64, 16).describe(resuming=range(64)).splitlines()[0]
    assert "max_concurrency 16 (resuming all 64 shards, no identify), about" in first


@pytest.mark.parametrize(
    ("shards", "mc", "resuming", "ready", "budget_wait", "text"),
    [
        (64, 1, set(), set(range(12)), False, "identifying 12/64 shards, about 52 s left"),
        (64, 16, set(), set(), False, "identifying 0/64 shards, about 4 s left"),
        (64, 16, set(), set(range(16)), False, "identifying 16/64 shards, about 3 s left"),
        (
            8,
            1,
            set(range(4)),
            set(range(5)),
            False,
            "identifying 5/8 shards, about 3 s left",
        ),
        (
            64,
            1,
            set(),
            set(range(40)),
            True,
            "identifying 40/64 shards; the rest wait for the session start budget to refill",
        ),
        (4, 1, set(range(4)), {0}, False, "resuming 1/4 shards"),
    ],
)
def test_progress_line(
    shards: int, mc: int, resuming: set[int], ready: set[int], budget_wait: bool, text: str
) -> None:
    progress = StartProgress(_plan(shards, mc), resuming, window_s=1.0, started_at=0.0)
    assert progress.line(ready, budget_wait=budget_wait) == text


def test_time_left_is_rounded_up_never_to_0_s() -> None:
    progress = StartProgress(_plan(4), set(), window_s=0.25, started_at=0.0)
    assert progress.line({0, 1}) == "identifying 2/4 shards, about 1 s left"


@pytest.mark.parametrize(
    ("shards", "mc", "resuming", "stopped", "text"),
    [
        (64, 1, set(), 0, "all 64 shards ready in 71.2 s (identify floor 64.0 s)"),
        (64, 16, set(), 0, "all 64 shards ready in 71.2 s (identify floor 4.0 s)"),
        (1, 1, set(), 0, "1 shard ready in 71.2 s (identify floor 1.0 s)"),
        (4, 1, set(range(4)), 0, "all 4 shards ready in 71.2 s (all resumed)"),
        (1, 1, {0}, 0, "1 shard ready in 71.2 s (resumed)"),
        (4, 1, set(), 1, "3 of 4 shards ready in 71.2 s, 1 stopped (identify floor 4.0 s)"),
    ],
)
def test_ready_line(shards: int, mc: int, resuming: set[int], stopped: int, text: str) -> None:
    progress = StartProgress(_plan(shards, mc), resuming, window_s=1.0, started_at=10.0)
    assert progress.done_line(81.2, stopped=stopped) == text


_PROGRESS = re.compile(r'"identifying (\d)/4 shards, about \d+ s left"')
_READY = re.compile(r'"all 4 shards ready in \d+\.\d s \(identify floor 1\.0 s\)"')


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_start_logs_progress_then_one_ready_line(tmp_path: Path) -> None:
    fake = await FakeGatewayProc.start(shards=4, identify_window_s=0.2)
    sup = await SupervisorProc.start(
        fake, tmp_path, "--shards", "4", env={"SHARDMGR_PROGRESS_INTERVAL_S": "0.05"}
    )
    try:
        await sup.wait_status(all_connected)
        assert any("(4 identify windows to start), about" in line for line in sup.stdout)

        def ready_lines() -> list[str]:
            return _READY.findall(sup.stderr.read_text())

        # The ready line follows the last shard's READY by one status pulse at most.
        await sup.wait_status(lambda doc: bool(ready_lines()), 10.0)
        log = sup.stderr.read_text()
        counts = [int(n) for n in _PROGRESS.findall(log)]
        assert counts and counts == sorted(counts) and counts[-1] < 4, log[-2000:]
        assert len(ready_lines()) == 1
    finally:
        await sup.close()
        await fake.close()


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_start_that_only_resumes_says_so(tmp_path: Path) -> None:
    fake = await FakeGatewayProc.start(shards=4, max_concurrency=2)
    sup = await SupervisorProc.start(fake, tmp_path, "--shards", "4")
    try:
        await sup.wait_status(all_connected)
        stop = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shardmgr", "stop", "--keep-sessions",
            "--state-dir", str(tmp_path / "state"),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.wait_for(stop.communicate(), 30.0)
        assert await sup.wait_exit(15.0) == 0
        await sup.close()
        sup = await SupervisorProc.start(fake, tmp_path, "--shards", "4", name="second")
        await sup.wait_status(all_connected)
        plan_line = next(line for line in sup.stdout if line.startswith("plan: "))
        assert "(resuming all 4 shards, no identify), about" in plan_line, plan_line

        def resumed_line() -> bool:
            return '"all 4 shards ready in' in sup.stderr.read_text()

        await sup.wait_status(lambda doc: resumed_line(), 10.0)
        assert "s (all resumed)" in sup.stderr.read_text()
    finally:
        await sup.close()
        await fake.close()

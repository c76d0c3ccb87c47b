"""The short chaos run inside ``make test``: the same harness and checks as ``make chaos``,
``CHAOS_SECONDS`` long (default 45) with ``CHAOS_SEED`` (default 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import ChaosConfig, run_chaos

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
async def test_short_chaos_run_loses_nothing_and_wastes_nothing(tmp_path: Path) -> None:
    cfg = ChaosConfig.from_env(45.0, workdir=tmp_path)
    report = await run_chaos(cfg)
    text = report.render()
    print(text)
    assert report.passed, f"{text}\n(logs and fault log in {tmp_path})"

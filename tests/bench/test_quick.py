"""``python -m bench --quick`` (the smoke run of ``make bench``): every benchmark runs end to end
against real processes on 127.0.0.1 and reports a figure. It checks the harness, never speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ("receive", "coldstart", "memory", "scale", "recovery", "overhead")
KEYS = {"name", "value", "unit", "baseline", "ratio", "target", "pass"}


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_quick_run_measures_every_benchmark_and_writes_results_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert rows and all(set(r) == KEYS for r in rows)
    ours = [r for r in rows if r["name"].split(".")[0] in BENCHMARKS]
    broken = [r["name"] for r in ours if r["value"] is None]
    assert not broken, f"benchmarks that could not measure: {broken}\n{proc.stdout[-4000:]}"
    for name in BENCHMARKS:
        assert any(r["name"].startswith(name + ".") for r in rows), f"no figure from {name}"
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout  # the table was printed

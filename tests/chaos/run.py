"""``make chaos``: the long chaos run (``CHAOS_SECONDS``, default 300; ``CHAOS_SEED``;
``CHAOS_COMPRESS``: zlib-stream (default), zstd-stream or none).

Prints a one-screen report and exits 0 only when every check passed (1 when one failed,
2 when the run could not be set up at all). Logs, the fault log and the report stay in
``CHAOS_DIR`` (default ``chaos-run/``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.chaos.harness import ChaosConfig, ChaosError, report_json, run_chaos


def main() -> int:
    cfg = ChaosConfig.from_env(
        300.0, workdir=Path(os.environ.get("CHAOS_DIR", "chaos-run")).resolve()
    )
    try:
        report = asyncio.run(run_chaos(cfg, progress=sys.stderr))
    except ChaosError as exc:
        print(f"chaos: could not run: {exc}", file=sys.stderr)
        return 2
    (cfg.workdir / "report.json").write_text(report_json(report) + "\n")
    print(report.render())
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())

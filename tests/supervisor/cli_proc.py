"""Run one ``shardmgr`` command as a subprocess, with no ``SHARDMGR_*`` setting or token
inherited from the test's own environment."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


async def run_shardmgr(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    program: tuple[str, ...] = ("-m", "shardmgr"),
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr)."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SHARDMGR_") and k != "DISCORD_TOKEN"
    }
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *program, *args,
        env=full_env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60.0)
    return proc.returncode or 0, out.decode(), err.decode()

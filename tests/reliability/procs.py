"""Process helpers for the reliability tests: run ``python -m shardmgr`` as a user would,
find every process a test started (by a marker in its environment), start the fake
gateway on a free port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fakegateway import FakeConfig, FakeProcess, spawn

REPO: Final = Path(__file__).resolve().parents[2]
# Discord's token shape (base64 of a numeric id . timestamp . hmac), recognisable in any output.
SECRET_TOKEN: Final = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.SeCrEt.LeakCanaryToken_xyzzy_9f8e7d6c5b4a"
# Not SHARDMGR_*: the supervisor scrubs those from worker environments.
MARKER_ENV: Final = "SMGR_TEST_PROCESS_MARKER"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def base_env(marker: str, **extra: str) -> dict[str, str]:
    """A clean environment: nothing of the caller's SHARDMGR_*/DISCORD_* settings leaks in,
    and the marker lets us find every process the command started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHARDMGR_", "DISCORD_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env[MARKER_ENV] = marker
    env.update(extra)
    return env


def new_marker() -> str:
    return uuid.uuid4().hex


def marked_pids(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (children inherit it)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and needle in env.split(b"\0"):
            found.append(int(entry))
    return found


def kill_marked(marker: str) -> None:
    for pid in marked_pids(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 30.0) -> CliResult:
    proc = subprocess.run(
        [sys.executable, "-m", "shardmgr", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@contextlib.contextmanager
def fake_gateway(
    cwd: Path,
    marker: str,
    *,
    shards: int = 2,
    token: str = SECRET_TOKEN,
    extra: list[str] | None = None,
) -> Iterator[tuple[str, FakeProcess]]:
    """The fake gateway (``fakegateway.spawn``) on a free port; yields its base URL."""
    config = FakeConfig(shards=shards, heartbeat_interval_s=1.0, identify_window_s=0.2, token=token)
    with spawn(
        config, args=extra or (), env=base_env(marker), cwd=cwd, stderr=subprocess.DEVNULL
    ) as fake:
        yield fake.url, fake

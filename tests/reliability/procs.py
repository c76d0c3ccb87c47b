"""Process helpers for the reliability tests: run ``python -m shardmgr`` as a user would,
find every process a test started (by a marker in its environment or on its command line,
and their descendants), start the fake
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
# The same marker as a ``python -X`` option (Python keeps unknown ones in sys._xoptions).
MARKER_X: Final = "smgr_test_marker"


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


def python_argv(marker: str) -> list[str]:
    """The interpreter with the marker on its command line: a process that made itself
    non-dumpable (as the supervisor and workers do) has an environment only root can read,
    but its command line stays public."""
    return [sys.executable, "-X", f"{MARKER_X}={marker}"]


def marked_pids(marker: str) -> list[int]:
    """Live processes started with ``marker`` (in their environment, or on their command
    line through ``python_argv``), and all their descendants: a worker is non-dumpable and
    carries no marker argument, but its parent does."""
    env_needle = f"{MARKER_ENV}={marker}".encode()
    arg_needle = f"{MARKER_X}={marker}".encode()
    parents: dict[int, int] = {}
    marked: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == b"Z":
            continue
        parents[pid] = int(fields[1])
        if arg_needle in cmdline(pid).split(b"\0") or env_needle in _proc_file(
            pid, "environ"
        ).split(b"\0"):
            marked.add(pid)
    grew = True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in marked} - marked
        marked |= children
        grew = bool(children)
    return sorted(marked)


def kill_marked(marker: str) -> None:
    for pid in marked_pids(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cmdline(pid: int) -> bytes:
    return _proc_file(pid, "cmdline")


def _proc_file(pid: int, name: str) -> bytes:
    """/proc/PID/NAME, or nothing if it is gone or closed to us."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 30.0) -> CliResult:
    marker = env.get(MARKER_ENV)
    python = python_argv(marker) if marker else [sys.executable]
    proc = subprocess.run(
        [*python, "-m", "shardmgr", *args],
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

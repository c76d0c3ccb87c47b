"""``shardmgr stop``: find the running supervisor through its pid file and signal it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Final

from shardmgr.errors import UserError

# SIGTERM stops the way the supervisor was configured (--keep-sessions or not); this one
# always suspends the sessions and saves them.
KEEP_SIGNAL: Final = signal.SIGUSR2


def write_pid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
    os.replace(tmp, path)


def remove_pid(path: Path) -> None:
    """Only our own pid file: a newer supervisor may already have replaced it."""
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text(encoding="ascii").strip()) == os.getpid():
            path.unlink()


def refuse_if_running(path: Path) -> None:
    """Two supervisors on one state directory would run the same shards twice."""
    try:
        pid = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return
    if pid != os.getpid() and _alive(pid):
        raise UserError(
            f"a supervisor is already running (pid {pid}, pid file {path}); stop it first "
            "or give this one another --state-dir"
        )


def read_pid(path: Path) -> int:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise UserError(f"no running supervisor found (no pid file at {path})") from None
    except OSError as exc:
        raise UserError(f"cannot read the pid file {path}: {exc.strerror}") from None
    try:
        pid = int(text)
    except ValueError:
        raise UserError(f"the pid file {path} is corrupt; remove it") from None
    if not _alive(pid):
        raise UserError(f"no running supervisor found (stale pid file {path}, pid {pid})")
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(pid_path: Path, *, keep_sessions: bool, wait_s: float = 30.0) -> int:
    pid = read_pid(pid_path)
    try:
        os.kill(pid, KEEP_SIGNAL if keep_sessions else signal.SIGTERM)
    except PermissionError:
        raise UserError(f"not allowed to signal the supervisor (pid {pid})") from None
    except ProcessLookupError:
        return 0
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            print(f"supervisor {pid} stopped" + (" (sessions saved)" if keep_sessions else ""))
            return 0
        time.sleep(0.1)
    print(f"supervisor {pid} is still stopping after {wait_s:.0f}s")
    return 1

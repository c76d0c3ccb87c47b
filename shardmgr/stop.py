"""``shardmgr stop``: find the running supervisor through its pid file and signal it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Final

from shardmgr.errors import UserError
from shardmgr.pidfile import read_pid

# SIGTERM stops the way the supervisor was configured (--keep-sessions or not); this one
# always suspends the sessions and saves them.
KEEP_SIGNAL: Final = signal.SIGUSR2


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

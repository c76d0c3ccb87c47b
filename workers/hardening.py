"""Keep the token out of core dumps and out of other processes' reach: no core file
(RLIMIT_CORE 0) and, on Linux, not dumpable (``prctl(PR_SET_DUMPABLE, 0)``), which also
closes ``/proc/PID/environ``, ``/proc/PID/mem`` and ptrace to other processes of the same
user. Called first thing by the supervisor and by every worker; ``allow_core_dumps`` (a
setting, for debugging a crash) leaves both as they were.

Why: a red-team check found the bot token four times in a 61 MB core of a worker."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import resource
import sys
from collections.abc import Mapping
from typing import Final

log = logging.getLogger(__name__)

# The supervisor passes its allow_core_dumps setting to workers through this variable, read
# before the worker has received anything secret.
ALLOW_CORE_DUMPS_ENV: Final = "SHARDMGR_ALLOW_CORE_DUMPS"
_PR_GET_DUMPABLE: Final = 3
_PR_SET_DUMPABLE: Final = 4


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    result: int = libc.prctl(option, arg, 0, 0, 0)
    if result < 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")
    return result


def protect_process(allow_core_dumps: bool = False) -> None:
    """No core dumps and not dumpable, unless ``allow_core_dumps``. Never raises: a platform
    without prctl keeps RLIMIT_CORE 0 alone."""
    if allow_core_dumps:
        return
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:
        log.warning("cannot turn core dumps off", extra={"error": str(exc)})
    if sys.platform != "linux":
        return
    try:
        _prctl(_PR_SET_DUMPABLE, 0)
    except (OSError, AttributeError) as exc:
        log.warning("cannot make the process non-dumpable", extra={"error": str(exc)})


def dumpable() -> bool:
    """This process's dumpable flag (Linux); what tests and a debugging operator check."""
    return _prctl(_PR_GET_DUMPABLE) != 0


def core_dumps_allowed(env: Mapping[str, str]) -> bool:
    return env.get(ALLOW_CORE_DUMPS_ENV) == "1"

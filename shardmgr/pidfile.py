"""The running supervisor's pid file: created and locked (``flock``) before anything else, so
two supervisors on one state directory cannot both start, and ``shardmgr stop`` can find
the one that runs. Opened through ``statefiles``: never through a symlink."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from shardmgr import statefiles
from shardmgr.errors import UserError


class PidFile:
    """Held for the supervisor's whole life; the kernel drops the lock if the process dies,
    so a stale file never blocks a start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        statefiles.ensure_dir(self.path.parent)
        try:
            fd = statefiles.open_existing_or_new(self.path)
        except OSError as exc:
            raise UserError(
                f"cannot open the pid file {statefiles.refusal(self.path, exc)}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read(fd)
            os.close(fd)
            shown = f"pid {other}, " if other is not None else ""
            raise UserError(
                f"a supervisor is already running ({shown}pid file {self.path}); stop it "
                "first or give this one another --state-dir"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as exc:
            os.close(fd)
            raise UserError(f"cannot write the pid file {self.path}: {exc.strerror}") from None
        self._fd = fd

    def release(self) -> None:
        """Remove the file only while we still hold its lock: then it is ours."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(fd)


def _read(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def read_pid(path: Path) -> int:
    """The pid of the supervisor holding ``path``; a UserError if none does."""
    try:
        fd = statefiles.open_read(path)
    except FileNotFoundError:
        raise UserError(f"no running supervisor found (no pid file at {path})") from None
    except OSError as exc:
        raise UserError(f"cannot read the pid file {statefiles.refusal(path, exc)}") from None
    try:
        pid = _read(fd)
        if pid is None:
            raise UserError(f"the pid file {path} is corrupt; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return pid
        raise UserError(f"no running supervisor found (stale pid file {path}, pid {pid})")
    finally:
        os.close(fd)

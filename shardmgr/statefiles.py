"""Safe primitives for every file the supervisor keeps in its state directory (pid file, saved
sessions, dead letters): the directory is ours alone, no file is reached through a symlink,
and a file is replaced atomically through an unpredictable temporary name.

Why: a state directory another local user can write to lets them plant a symlink where the
supervisor writes next (``supervisor.pid``, ``sessions.json.tmp``), and the supervisor then
truncates or overwrites whatever file the link points to with its own rights."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Final

from shardmgr.errors import UserError

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
# Every state file is small; a larger one is not ours (or is corrupt) and is not read whole.
MAX_READ_BYTES: Final = 16 * 1024 * 1024
# O_NONBLOCK: a FIFO planted under a state file's name must not block the open (it has no
# effect on regular files, and anything else is refused after the open).
_NOFOLLOW: Final = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def ensure_dir(path: Path, what: str = "--state-dir") -> None:
    """Create ``path`` and any missing parents with mode 0700 whatever the umask, then
    refuse (UserError, one line) a directory another user owns or can write to."""
    missing: list[Path] = []
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile: checked below like any existing directory
        except OSError as exc:
            raise UserError(f"{what} {path}: cannot create {directory}: {exc.strerror}") from None
        # mkdir's mode is masked by the umask; chmod is not (a umask of 0o200 would
        # otherwise leave the directory unwritable, 0o000 cannot widen it, but be exact).
        os.chmod(directory, DIR_MODE)
    check_dir(path, what)


def check_dir(path: Path, what: str = "--state-dir") -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be used: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"{what} {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise UserError(
            f"{what} {path} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()}); "
            "use a directory of your own"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UserError(
            f"{what} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run chmod 700 {path}, or use a subdirectory of your own"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path} is not writable")


def open_existing_or_new(path: Path, flags: int = os.O_RDWR) -> int:
    """A file descriptor for ``path``: created new (O_EXCL) when absent, opened as is when a
    regular file of ours; never through a symlink."""
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL | _NOFOLLOW, FILE_MODE)
    except FileExistsError:
        return _open_ours(path, flags)


def open_append(path: Path) -> int:
    """For append-only logs in the state directory (one record per write)."""
    return open_existing_or_new(path, os.O_WRONLY | os.O_APPEND)


def refusal(path: Path, exc: OSError) -> str:
    """One line for an operator: a symlink is named as such (ELOOP says it obscurely)."""
    if exc.errno == errno.ELOOP:
        return f"{path} is a symlink; state files are never opened through one (remove it)"
    return f"{path}: {exc.strerror or exc}"


def open_read(path: Path) -> int:
    return _open_ours(path, os.O_RDONLY)


def read_bytes(path: Path, max_bytes: int = MAX_READ_BYTES) -> bytes:
    """The file's contents, not through a symlink; OSError as ``open`` would raise it."""
    fd = open_read(path)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(f"{path} is larger than {max_bytes} bytes")
    return data


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, mode 0600: written to an unpredictable temporary name
    in the same directory (created O_EXCL|O_NOFOLLOW by mkstemp), synced, then renamed over
    ``path`` (rename replaces a symlink there, it never writes through it)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    """Make the rename itself durable (a crash right after must not bring back the old file)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _open_ours(path: Path, flags: int) -> int:
    """An existing regular file of this user, never through a symlink."""
    fd = os.open(path, flags | _NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise OSError(f"{path} is owned by uid {st.st_uid}, not by this user")
    except BaseException:
        os.close(fd)
        raise
    return fd

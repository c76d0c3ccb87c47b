"""The running supervisor's HTTP address, recorded in its state directory so that `status`,
`presence` and `stop` find it whatever ``--http`` it was given (port 0 included).

Local files: written to an unpredictable temporary name in the same directory, opened with
``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600, then renamed over the real name; read with
``O_NOFOLLOW``. A symlink planted at either name is never followed."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Final

from shardmgr.errors import UserError

FILE_NAME: Final = "supervisor.http"
FILE_MODE: Final = 0o600
# An address is ``[host]:port``; anything longer is not a file we wrote.
MAX_BYTES: Final = 512


def address_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / FILE_NAME


def write_address(state_dir: str | Path, address: str) -> Path:
    """Record ``address`` (``HOST:PORT``); returns the file's path."""
    path = address_path(state_dir)
    tmp = path.with_name(f".{FILE_NAME}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, FILE_MODE)
    try:
        try:
            os.write(fd, f"{address}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def remove_address(state_dir: str | Path, address: str) -> None:
    """Remove the file if it still holds our address (a newer supervisor's stays)."""
    path = address_path(state_dir)
    with contextlib.suppress(OSError, UserError):
        if read_address(state_dir) == address:
            path.unlink()


def read_address(state_dir: str | Path) -> str | None:
    """The recorded address, or None when no supervisor recorded one."""
    path = address_path(state_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    text = raw.decode("utf-8", "replace").strip()
    if not text or len(raw) > MAX_BYTES or "\n" in text or ":" not in text:
        raise UserError(f"{path} does not hold a supervisor address; remove it")
    return text

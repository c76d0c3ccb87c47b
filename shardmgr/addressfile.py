"""The running supervisor's HTTP address, recorded in its state directory so that `status`,
`presence` and `stop` find it whatever ``--http`` it was given (port 0 included).

Written and read with the state files' own primitives (``shardmgr.statefiles``): an
unpredictable temporary name in the same directory, mode 0600, renamed over the real name;
never read through a symlink."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

from shardmgr import statefiles
from shardmgr.errors import UserError

FILE_NAME: Final = "supervisor.http"
# An address is ``[host]:port``; anything longer is not a file we wrote.
MAX_BYTES: Final = 512


def address_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / FILE_NAME


def write_address(state_dir: str | Path, address: str) -> Path:
    """Record ``address`` (``HOST:PORT``); returns the file's path."""
    path = address_path(state_dir)
    statefiles.write_atomic(path, f"{address}\n".encode())
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
        fd = statefiles.open_read(path)
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

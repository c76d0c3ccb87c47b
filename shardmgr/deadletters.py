"""The dead-letter file, ``<state_dir>/dead-letters.jsonl``: one JSON object per poison event
the workers delivered past, ``{"shard_id", "seq", "t", "d", "reason", "stack", "at"}``.
Mode 0600, appended one whole line per write, never opened through a symlink."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Final

import msgspec

from shardmgr import statefiles

FILE_NAME: Final = "dead-letters.jsonl"


class DeathReason(enum.StrEnum):
    """How the handler took its worker down while inside the event."""

    CRASH = "crash"
    HANG = "hang"


class DeadLetter(msgspec.Struct, frozen=True):
    shard_id: int
    seq: int
    t: str
    d: msgspec.Raw
    reason: DeathReason
    stack: str | None
    at: float  # wall-clock seconds


_decoder: Final = msgspec.json.Decoder(DeadLetter)


def path_in(state_dir: str | Path) -> Path:
    return Path(state_dir) / FILE_NAME


def append(state_dir: str | Path, letter: DeadLetter) -> None:
    """One line; OSError (a symlink, another user's file) as ``statefiles`` raises it."""
    directory = Path(state_dir)
    statefiles.ensure_dir(directory)
    fd = statefiles.open_append(path_in(directory))
    try:
        os.write(fd, msgspec.json.encode(letter) + b"\n")
    finally:
        os.close(fd)


def read_all(state_dir: str | Path) -> list[DeadLetter]:
    """Every record, oldest first; a torn or foreign line is passed over. [] without a file."""
    try:
        data = statefiles.read_bytes(path_in(state_dir))
    except FileNotFoundError:
        return []
    out: list[DeadLetter] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            out.append(_decoder.decode(line))
        except msgspec.DecodeError:
            continue
    return out


def find(state_dir: str | Path, shard_id: int, seq: int) -> DeadLetter | None:
    """The latest record of (shard, seq)."""
    found = [r for r in read_all(state_dir) if r.shard_id == shard_id and r.seq == seq]
    return found[-1] if found else None

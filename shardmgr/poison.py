"""Poison events, as the supervisor sees them: which event each dead worker's handlers were
inside (``workers.inflight``), how many deaths each (shard, seq) has caused, the skip a
successor is started with after ``DEATHS_TO_SKIP`` of them, and the dead-letter record
once the successor has delivered past it.

The rule is per shard: a worker that dies while one shard's handler is inside seq 12 makes
seq 12 of that shard the suspect; its sibling shards, idle at that moment, have none."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final, Protocol

import msgspec

from shardmgr import deadletters, statefiles
from shardmgr.deadletters import DeadLetter, DeathReason
from shardmgr.workerproc import SpawnedWorker
from workers import inflight, ipc
from workers.inflight import Suspect
from workers.logsetup import fields

log = logging.getLogger(__name__)

# Deaths inside the same event of a shard after which the successor delivers past it.
DEATHS_TO_SKIP: Final = 2


class _Pending(msgspec.Struct):
    suspect: Suspect
    reason: DeathReason
    stack: str | None
    # the session the seqs belong to: a skip never applies to another session's seqs
    session_id: str | None


def _same_poison(a: Suspect, b: Suspect) -> Suspect | None:
    """The events two suspects share, or None. Batches are cut anew after each resume (the
    backlog fills at its own pace), so the same poison sits in overlapping batches; their
    overlap is where it is."""
    first, last = max(a.first_seq, b.first_seq), min(a.last_seq, b.last_seq)
    if first > last:
        return None
    return Suspect(first, last, a.event if a.first_seq == first else b.event)


class PoisonTracker:
    """Owns the private directory of the workers' in-flight files (0700, removed on close)."""

    def __init__(self, state_dir: str | Path) -> None:
        self._state_dir = Path(state_dir)
        self._dir: Path | None = None
        # shard -> the last suspect, its session and the deaths it has caused
        self._suspect: dict[int, tuple[Suspect, str | None, int]] = {}
        # shard -> the poison its next worker delivers past
        self._skip: dict[int, _Pending] = {}
        # Each process gets a file of its own: a canary standby is set up while the process it
        # replaces still runs (and may still die), so a file per worker slot would be reused
        # under a live process and its death would name no suspect.
        self._files = itertools.count(1)

    def _private_dir(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="shardmgr-inflight-"))
        return self._dir

    def inflight_file(self, worker_id: int, shards: int) -> str | None:
        """A fresh, zeroed in-flight file for a new process of ``worker_id``; None (and
        logged) when it cannot be made: the worker then runs without poison detection."""
        try:
            path = self._private_dir() / f"worker-{worker_id}-{next(self._files)}"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.ftruncate(fd, inflight.file_size(shards))
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("cannot create an in-flight file", extra=fields(error=str(exc)))
            return None
        return str(path)

    def discard(self, path: str | None) -> None:
        """A file no process will use (or whose process is gone and read)."""
        if path is not None and self._dir is not None and Path(path).parent == self._dir:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def process_ended(
        self,
        path: str | None,
        shard_ids: list[int],
        hung: bool,
        session_of: Callable[[int], ipc.SessionInfo | None],
    ) -> None:
        """A worker whose in-flight file is ``path`` died (``hung``: killed as hung): note
        what its handlers were inside. ``session_of(shard)``: the session its successor
        resumes (the seqs' session)."""
        if path is None or self._dir is None or Path(path).parent != self._dir:
            return
        try:
            data = Path(path).read_bytes()
        except OSError:
            return
        finally:
            self.discard(path)
        reason = DeathReason.HANG if hung else DeathReason.CRASH
        stack = inflight.read_stack(data, len(shard_ids)) if hung else None
        for sid, suspect in zip(
            shard_ids, inflight.read_suspects(data, len(shard_ids)), strict=True
        ):
            if suspect is not None:
                session = session_of(sid)
                session_id = session.session_id if session is not None else None
                self._died_inside(sid, suspect, session_id, reason, stack)

    def _died_inside(
        self,
        sid: int,
        suspect: Suspect,
        session_id: str | None,
        reason: DeathReason,
        stack: str | None,
    ) -> None:
        deaths = 1
        previous = self._suspect.get(sid)
        if previous is not None and previous[1] == session_id:
            shared = _same_poison(previous[0], suspect)
            if shared is not None:
                suspect, deaths = shared, previous[2] + 1
        self._suspect[sid] = (suspect, session_id, deaths)
        log.warning(
            "worker died inside a handler call",
            extra=fields(
                shard=sid,
                seq=suspect.first_seq,
                last_seq=suspect.last_seq,
                event=suspect.event,
                reason=reason,
                deaths=deaths,
            ),
        )
        if deaths >= DEATHS_TO_SKIP and session_id is not None:
            self._skip[sid] = _Pending(suspect, reason, stack, session_id)

    def skip_for(self, sid: int, session: ipc.SessionInfo | None) -> ipc.PoisonSkip | None:
        """The poison the next worker of shard ``sid``, resuming ``session``, delivers past."""
        pending = self._skip.get(sid)
        if pending is None or session is None or session.session_id != pending.session_id:
            return None
        return ipc.PoisonSkip(pending.suspect.first_seq, pending.suspect.last_seq)

    def dead_lettered(self, msg: ipc.DeadLettered) -> None:
        """The successor delivered past the poison: keep it in the dead-letter file."""
        pending = self._skip.get(msg.shard_id)
        if pending is not None and msg.seq >= pending.suspect.last_seq:
            del self._skip[msg.shard_id]
            self._suspect.pop(msg.shard_id, None)
        letter = DeadLetter(
            shard_id=msg.shard_id,
            seq=msg.seq,
            t=msg.t,
            d=msgspec.Raw(msg.d or b"null"),
            reason=pending.reason if pending is not None else DeathReason.CRASH,
            stack=pending.stack if pending is not None else None,
            at=time.time(),
        )
        log.error(
            "poison event dead-lettered: delivered past after killing its worker "
            f"{DEATHS_TO_SKIP} times (shardmgr dead-letters list / replay)",
            extra=fields(shard=msg.shard_id, seq=msg.seq, event=msg.t, reason=letter.reason),
        )
        try:
            deadletters.append(self._state_dir, letter)
        except Exception as exc:
            log.error(
                "cannot write the dead-letter file",
                extra=fields(path=str(deadletters.path_in(self._state_dir)), error=str(exc)),
            )

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class ReplayOutcome(enum.StrEnum):
    DONE = "done"
    FAILED = "failed"  # the handler raised
    NOT_FOUND = "not_found"
    NOT_RUNNING = "not_running"
    TIMEOUT = "timeout"


class ReplayTarget(Protocol):
    """The worker slot that runs a shard (``WorkerSlot``)."""

    shard_ids: list[int]
    up: bool

    @property
    def proc(self) -> SpawnedWorker | None: ...


class Replays:
    """``shardmgr dead-letters replay``: a dead letter to the handler of the worker that
    owns its shard now, answered by ``ipc.Replayed``."""

    def __init__(self, state_dir: str | Path, timeout_s: float) -> None:
        self._state_dir = state_dir
        self._timeout_s = timeout_s
        self._nonces = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[ipc.Replayed]] = {}

    def replayed(self, msg: ipc.Replayed) -> None:
        future = self._waiting.get(msg.nonce)
        if future is not None and not future.done():
            future.set_result(msg)

    async def replay(
        self, slots: Iterable[ReplayTarget], shard_id: int, seq: int
    ) -> tuple[ReplayOutcome, str]:
        try:
            letter = deadletters.find(self._state_dir, shard_id, seq)
        except OSError as exc:
            return ReplayOutcome.NOT_FOUND, statefiles.refusal(
                deadletters.path_in(self._state_dir), exc
            )
        if letter is None:
            return ReplayOutcome.NOT_FOUND, f"no dead letter for shard {shard_id} seq {seq}"
        slot = next((s for s in slots if shard_id in s.shard_ids), None)
        proc = slot.proc if slot is not None else None
        if slot is None or proc is None or not slot.up or proc.returncode is not None:
            return ReplayOutcome.NOT_RUNNING, f"no running worker owns shard {shard_id}"
        nonce = next(self._nonces)
        future: asyncio.Future[ipc.Replayed] = asyncio.get_running_loop().create_future()
        self._waiting[nonce] = future
        msg = ipc.ReplayEvent(
            gen=proc.gen, nonce=nonce, shard_id=shard_id, seq=seq, t=letter.t, d=bytes(letter.d)
        )
        try:
            if not await proc.send(msg):
                return ReplayOutcome.NOT_RUNNING, f"the worker of shard {shard_id} is gone"
            async with asyncio.timeout(self._timeout_s):
                answer = await future
        except TimeoutError:
            return ReplayOutcome.TIMEOUT, f"the handler did not return in {self._timeout_s:g} s"
        finally:
            self._waiting.pop(nonce, None)
        if answer.error is not None:
            return ReplayOutcome.FAILED, answer.error
        return ReplayOutcome.DONE, f"shard {shard_id} seq {seq} handed to the handler again"

"""Each shard's latest resumable session, and the keep-sessions state file that carries them
across a supervisor restart."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from shardmgr import statefiles
from shardmgr.errors import UserError
from shardmgr.logthrottle import LogThrottle
from workers import ipc
from workers.clock import REAL_CLOCK, Clock, wait_event
from workers.logsetup import fields

log = logging.getLogger(__name__)

STATE_VERSION = 1


class SessionStore:
    """What a replacement worker must RESUME. Fed from worker reports in pipe order: READY
    starts a session, the stats checkpoint (seq of the last event the handler finished)
    advances it, and anything that ends a session forgets it."""

    def __init__(self) -> None:
        self._sessions: dict[int, ipc.SessionInfo] = {}
        # Set on every real change, for the saver: a crash must lose at most one interval.
        self.changed = asyncio.Event()

    def get(self, shard_id: int) -> ipc.SessionInfo | None:
        return self._sessions.get(shard_id)

    def put(self, shard_id: int, session: ipc.SessionInfo) -> None:
        if self._sessions.get(shard_id) != session:
            self._sessions[shard_id] = session
            self.changed.set()

    def forget(self, shard_id: int) -> None:
        if self._sessions.pop(shard_id, None) is not None:
            self.changed.set()

    def clear(self) -> None:
        if self._sessions:
            self._sessions.clear()
            self.changed.set()

    def snapshot(self) -> dict[int, ipc.SessionInfo]:
        return dict(self._sessions)

    def on_message(self, msg: ipc.ToSupervisor) -> None:
        if isinstance(msg, ipc.SessionStarted):
            self._on_started(msg)
        elif isinstance(msg, ipc.Stats):
            for shard in msg.shards:
                if shard.session is not None:
                    self.put(shard.shard_id, shard.session)
        elif isinstance(msg, ipc.Reconnecting):
            if not msg.resume:
                self.forget(msg.shard_id)
        elif isinstance(msg, ipc.ShardStopped):
            if msg.session is not None and not msg.fatal:
                self.put(msg.shard_id, msg.session)
            else:
                self.forget(msg.shard_id)
        elif isinstance(msg, ipc.Suspended):
            for shard_id, session in msg.sessions.items():
                self.put(shard_id, session)

    def _on_started(self, msg: ipc.SessionStarted) -> None:
        known = self._sessions.get(msg.shard_id)
        same = known is not None and known.session_id == msg.session.session_id
        if msg.kind == "resume" and known is not None and same:
            # RESUMED carries the socket's seq, which may be ahead of what the handler has
            # finished; keep the checkpoint so a crash now does not skip unhandled events.
            self.put(
                msg.shard_id,
                ipc.SessionInfo(
                    session_id=known.session_id,
                    seq=min(known.seq, msg.session.seq),
                    resume_url=msg.session.resume_url,
                ),
            )
        else:
            self.put(msg.shard_id, msg.session)


class SessionSaver:
    """Writes the sessions to the state file whenever they change, at most once per
    ``interval_s``, so that a supervisor killed without warning (OOM killer, SIGKILL, a node
    lost) leaves sessions its successor can resume. ``save`` does the writing, through
    ``offload`` (a thread by default: an fsync must not stall pings and grants); its errors
    are logged, rate-limited."""

    def __init__(
        self,
        store: SessionStore,
        save: Callable[[dict[int, ipc.SessionInfo]], None],
        interval_s: float,
        clock: Clock = REAL_CLOCK,
        offload: Callable[[Callable[[], None]], Awaitable[None]] = asyncio.to_thread,
    ) -> None:
        self._store = store
        self._save = save
        self._interval_s = interval_s
        self._clock = clock
        self._offload = offload
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._errors = LogThrottle(log, interval_s=60.0, clock=clock)
        self.saves = 0

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Ends the loop after any save in progress: never cancelled mid-write, so the caller
        may then write or remove the file itself without a late rename undoing it."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self._store.changed.set()  # wakes the loop, which then sees the stop
        await task

    async def _run(self) -> None:
        next_at = float("-inf")
        while True:
            await self._store.changed.wait()
            if self._stopping.is_set():
                return
            early = next_at - self._clock.monotonic()
            if early > 0:
                await wait_event(self._stopping, early, self._clock)
                if self._stopping.is_set():
                    return
            self._store.changed.clear()
            snapshot = self._store.snapshot()
            try:
                await self._offload(functools.partial(self._save, snapshot))
                self.saves += 1
            except (OSError, UserError) as exc:
                self._errors.warning(
                    "cannot save the sessions; a supervisor crash now means re-identifying",
                    error=str(exc),
                )
            next_at = self._clock.monotonic() + self._interval_s


class _StateFile(msgspec.Struct):
    version: int
    token_fingerprint: str
    total_shards: int
    saved_at: float  # wall clock: the resume window is real time, across processes
    sessions: dict[int, ipc.SessionInfo]
    # a reshard in progress when this was written (``Resharder.state``): for the operator;
    # the sessions are the old plan's, which the next start resumes
    reshard: dict[str, int | str] | None = None


def token_fingerprint(token: str) -> str:
    """Identifies the bot without storing anything that could authenticate as it."""
    return hashlib.sha256(b"shardmgr-state:" + token.encode()).hexdigest()[:24]


def write_state(
    path: Path,
    token: str,
    total_shards: int,
    sessions: dict[int, ipc.SessionInfo],
    reshard: dict[str, int | str] | None = None,
) -> None:
    """Atomic and owner-only (session ids let anyone with the token resume), never through a
    symlink: see ``statefiles``. OSError or UserError (an unsafe directory) if it cannot be."""
    statefiles.ensure_dir(path.parent, "state file directory")
    doc = _StateFile(
        version=STATE_VERSION,
        token_fingerprint=token_fingerprint(token),
        total_shards=total_shards,
        saved_at=time.time(),
        sessions=sessions,
        reshard=reshard,
    )
    statefiles.write_atomic(path, msgspec.json.encode(doc))


def read_state(
    path: Path, token: str, total_shards: int, max_age_s: float
) -> dict[int, ipc.SessionInfo]:
    """The saved sessions if the file belongs to this bot and shard count and is still inside
    the resume window; otherwise nothing (with a log line saying why). The file is consumed
    either way: sessions resumed once must not be resumed again by a later start."""
    try:
        raw = statefiles.read_bytes(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning(
            "cannot read the session state file: " + statefiles.refusal(path, exc),
            extra=fields(path=str(path)),
        )
        return {}
    with contextlib.suppress(OSError):
        path.unlink()
    try:
        doc = msgspec.json.decode(raw, type=_StateFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning(
            "ignoring a corrupt session state file", extra=fields(path=str(path), error=exc)
        )
        return {}
    reason = None
    if doc.version != STATE_VERSION:
        reason = f"version {doc.version}, expected {STATE_VERSION}"
    elif doc.token_fingerprint != token_fingerprint(token):
        reason = "it was written for another token"
    elif doc.total_shards != total_shards:
        reason = f"it was written for {doc.total_shards} shards, this run has {total_shards}"
    elif (age := time.time() - doc.saved_at) > max_age_s:
        reason = f"it is {age:.0f}s old, past the {max_age_s:.0f}s resume window"
    if reason is not None:
        log.warning("ignoring the session state file: " + reason, extra=fields(path=str(path)))
        return {}
    log.info("loaded saved sessions", extra=fields(path=str(path), sessions=len(doc.sessions)))
    return doc.sessions


def discard_state(path: Path) -> None:
    """After a stop that ended the sessions (close 1000): nothing there is resumable."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

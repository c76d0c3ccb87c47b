"""Built-in handlers for operators and tests (``--handler shardmgr.handlers:NAME``).

- ``log``: one line per event at DEBUG.
- ``null``: discards events (measures the gateway side alone).
- ``jsonl``: appends ``{"shard", "seq", "t", "d"}`` lines to ``$SHARDMGR_JSONL``
  (default ``events.jsonl``). Each batch is normally one ``write`` on an ``O_APPEND``
  descriptor, under an exclusive ``flock`` of the file, so several worker processes can
  share one file without interleaving lines.

A failed write never loses events. ``handle_batch`` returns only once the whole batch is in
the file: on an ``OSError`` (disk full, EIO) it logs a warning once per failure streak
(and, when the streak ends, one more with the number of failed attempts) and retries the
bytes not yet written, never the ones already written, with exponential backoff (0.05 s
doubling to 5 s), until the write succeeds or the task is cancelled at shutdown.
Meanwhile the shard's backlog fills and it stops reading, and its checkpoint, which a
restarted worker resumes from, stays before the batch. A short write is finished the same
way: the rest goes out next, while this process's other shards and the other processes
wait for the file lock, so lines stay whole. Only a worker killed or stopped halfway through
a batch leaves a torn last line; the batch is delivered again after the resume.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
from collections.abc import Callable, Sequence
from typing import Final

import msgspec

from workers.clock import REAL_CLOCK, Clock
from workers.events import Event
from workers.logsetup import fields

_log = logging.getLogger("shardmgr.events")
_sink_log = logging.getLogger(__name__)
_encode: Final = msgspec.json.encode

JSONL_ENV: Final = "SHARDMGR_JSONL"
JSONL_DEFAULT: Final = "events.jsonl"
# Another process holds the file lock for one write (microseconds), or for as long as its
# failed write takes to recover: poll quickly at first, then gently.
LOCK_POLL_BASE_S: Final = 0.001
LOCK_POLL_CAP_S: Final = 0.1

Write = Callable[[int, memoryview], int]


async def log(event: Event) -> None:
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug(
            "event",
            extra={
                "shard": event.shard_id,
                "seq": event.seq,
                "event": event.name,
                "bytes": len(event.raw),
            },
        )


async def null(event: Event) -> None:
    return None


def jsonl_line(event: Event) -> bytes:
    """The line for one event; ``d`` is the dispatch body exactly as received."""
    seq = b"null" if event.seq is None else str(event.seq).encode()
    return b'{"shard":%d,"seq":%s,"t":%s,"d":%s}\n' % (
        event.shard_id,
        seq,
        _encode(event.name),
        event.raw,
    )


class JsonlSink:
    """Appends events to a JSON-lines file, one ``write`` per batch, retrying failed writes
    until the whole batch is in the file (see the module docstring).

    ``clock`` and ``write`` (``os.write``'s signature) are there for tests."""

    def __init__(
        self,
        path: str | None = None,
        *,
        retry_base_s: float = 0.05,
        retry_cap_s: float = 5.0,
        clock: Clock = REAL_CLOCK,
        write: Write = os.write,
    ) -> None:
        self._path = path
        self._fd: int | None = None
        self._retry_base_s = retry_base_s
        self._retry_cap_s = retry_cap_s
        self._clock = clock
        self._write = write
        # The shards of a worker share this sink and its descriptor, and flock does not
        # exclude a descriptor from itself: one batch at a time in this process.
        self._writing = asyncio.Lock()
        self._flock = True

    @property
    def path(self) -> str:
        return self._path or os.environ.get(JSONL_ENV, JSONL_DEFAULT)

    async def start(self) -> None:
        self._open()

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return self._fd

    async def handle_batch(self, events: Sequence[Event]) -> None:
        # Each body is copied once, straight into the batch buffer.
        buffer = bytearray()
        for e in events:
            seq = b"null" if e.seq is None else str(e.seq).encode()
            buffer += b'{"shard":%d,"seq":%s,"t":%s,"d":' % (e.shard_id, seq, _encode(e.name))
            buffer += e.raw
            buffer += b"}\n"
        async with self._writing:
            await self._append(memoryview(buffer), len(events))

    async def _append(self, rest: memoryview, events: int) -> None:
        """Write all of ``rest``: on a failure, wait and write what is still unwritten."""
        failures = 0
        retry_s = self._retry_base_s
        poll_s = LOCK_POLL_BASE_S
        started = self._clock.monotonic()
        locked: int | None = None
        try:
            while rest:
                try:
                    fd = self._open()
                    if locked is None:
                        if not self._try_lock(fd):
                            await self._clock.sleep(poll_s)
                            poll_s = min(poll_s * 2, LOCK_POLL_CAP_S)
                            continue
                        locked = fd
                    written = self._write(fd, rest)
                    if written <= 0:
                        # Without an error, a write that takes nothing would busy-loop.
                        raise OSError(errno.EIO, "write wrote nothing")
                    rest = rest[written:]
                except OSError as exc:
                    failures += 1
                    if failures == 1:
                        _sink_log.warning(
                            "jsonl write failed; the batch is kept and retried, the shard "
                            "stops reading until it is written",
                            extra=fields(
                                path=self.path,
                                error=str(exc),
                                errno=exc.errno,
                                events=events,
                                bytes_left=len(rest),
                            ),
                        )
                    await self._clock.sleep(retry_s)
                    retry_s = min(retry_s * 2, self._retry_cap_s)
        except asyncio.CancelledError:
            if failures:
                _sink_log.warning(
                    "jsonl write given up at shutdown; the batch was not acknowledged, so "
                    "the shard's checkpoint stays before it",
                    extra=fields(path=self.path, failures=failures, bytes_left=len(rest)),
                )
            raise
        finally:
            if locked is not None:
                self._unlock(locked)
        if failures:
            _sink_log.warning(
                "jsonl write succeeded after failing",
                extra=fields(
                    path=self.path,
                    failures=failures,
                    outage_s=round(self._clock.monotonic() - started, 3),
                ),
            )

    def _try_lock(self, fd: int) -> bool:
        """Take the file's exclusive lock without blocking the event loop; False while
        another process holds it."""
        if not self._flock:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:
            # Some network filesystems have no flock: whole writes still do not interleave.
            self._flock = False
            _sink_log.warning(
                "jsonl file cannot be locked; a short write may interleave with other processes",
                extra=fields(path=self.path, error=str(exc)),
            )
        return True

    def _unlock(self, fd: int) -> None:
        if self._flock and fd == self._fd:
            fcntl.flock(fd, fcntl.LOCK_UN)

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


jsonl = JsonlSink()

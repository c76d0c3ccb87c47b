"""Built-in handlers for operators and tests (``--handler shardmgr.handlers:NAME``).

- ``log``: one line per event at DEBUG.
- ``null``: discards events (measures the gateway side alone).
- ``jsonl``: appends ``{"shard", "seq", "t", "d"}`` lines to ``$SHARDMGR_JSONL``
  (default ``events.jsonl``). Each batch is one ``write`` on an ``O_APPEND`` descriptor, so
  several worker processes can share one file without interleaving lines.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Final

import msgspec

from workers.events import Event

_log = logging.getLogger("shardmgr.events")
_encode: Final = msgspec.json.encode

JSONL_ENV: Final = "SHARDMGR_JSONL"
JSONL_DEFAULT: Final = "events.jsonl"


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
    """Appends events to a JSON-lines file, one ``write`` per batch."""

    def __init__(self, path: str | None = None) -> None:
        self._path = path
        self._fd: int | None = None

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
        fd = self._open()
        # Each body is copied once, straight into the batch buffer.
        buffer = bytearray()
        for e in events:
            seq = b"null" if e.seq is None else str(e.seq).encode()
            buffer += b'{"shard":%d,"seq":%s,"t":%s,"d":' % (e.shard_id, seq, _encode(e.name))
            buffer += e.raw
            buffer += b"}\n"
        view = memoryview(buffer)
        # A regular file takes the whole buffer in one write; the loop only guards
        # against a short write (disk full is raised, and counted as a handler error).
        while view:
            written = os.write(fd, view)
            view = view[written:]

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


jsonl = JsonlSink()

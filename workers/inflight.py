"""What each shard's handler is inside right now, in a small file the worker maps and the
supervisor reads after the worker died: the suspect of a crash or a hang, known without an
IPC message per event.

One file per worker process, created empty (zeros) by the supervisor in a private 0700
directory and named in ``WorkerConfig.inflight_file``. Layout: one fixed-size record per
shard, in the order of ``WorkerConfig.shards``, then a stack area the watchdog fills when
the event loop stalls (what a hang kill reports as the stack). A record is (first seq,
last seq, inside flag, event type): the handler's delivery writes it before a call and
clears the flag after, so the write costs one ``pack_into`` and one byte store per event.

Only the worker writes; the supervisor reads when the process is dead (after a kill, so a
record is never read half-written)."""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable
from typing import Final

import msgspec

from workers.events import Event

# Per shard: first seq (0: idle; -1: inside an event without a seq), last seq of a batch
# (0: a single event), then the event type, NUL-padded. Written as 64-bit words through a
# memoryview: one item store costs a fraction of a ``struct.pack_into``.
RECORD: Final = struct.Struct("<qq32s")
_WORDS: Final = RECORD.size // 8
_NAME_BYTES: Final = 32
# Event types padded for the record, once each: a mixed stream changes type on most events,
# and encoding and padding the name every time cost a tenth of the receive path (make bench).
_ENCODED_NAMES: dict[str, bytes] = {}
_ENCODED_NAMES_MAX: Final = 512
# The stall stack the watchdog leaves for the supervisor: a length, then UTF-8 text.
STACK_LEN: Final = struct.Struct("<Q")
STACK_BYTES: Final = 32 * 1024


def file_size(shards: int) -> int:
    return RECORD.size * shards + STACK_LEN.size + STACK_BYTES


class Suspect(msgspec.Struct, frozen=True):
    """The event (or batch: first..last) a shard's handler was inside."""

    first_seq: int
    last_seq: int
    event: str


def read_suspects(data: bytes, shards: int) -> list[Suspect | None]:
    """Per record (shard position): what its handler was inside, None when idle."""
    out: list[Suspect | None] = []
    for i in range(shards):
        off = i * RECORD.size
        if off + RECORD.size > len(data):
            out.append(None)
            continue
        first, last, name = RECORD.unpack_from(data, off)
        if first == 0:
            out.append(None)
            continue
        text = name.rstrip(b"\0").decode("utf-8", "replace")
        first = max(first, 0)
        out.append(Suspect(first, last or first, text))
    return out


def read_stack(data: bytes, shards: int) -> str | None:
    off = RECORD.size * shards
    if off + STACK_LEN.size > len(data):
        return None
    (n,) = STACK_LEN.unpack_from(data, off)
    if n == 0 or n > STACK_BYTES:
        return None
    start = off + STACK_LEN.size
    return data[start : start + n].decode("utf-8", "replace")


OnSkip = Callable[[Event], None]


class ShardSlot:
    """One shard's record. ``skip`` (first, last) names a poison event (or batch) of the
    resumed session that is not handed to the handler: ``on_skip`` gets it instead."""

    __slots__ = ("_buf", "_bytes", "_last_name", "_name_at", "at", "on_skip", "skip", "words")

    def __init__(
        self,
        buf: mmap.mmap | bytearray,
        index: int,
        skip: tuple[int, int] | None = None,
        on_skip: OnSkip | None = None,
    ) -> None:
        self._buf = buf
        # Through memoryviews: a slice store costs a fraction of mmap's own slice assignment.
        self._bytes = memoryview(buf).cast("B")
        self.words = self._bytes.cast("q")
        self.at = index * _WORDS
        self._name_at = index * RECORD.size + 16
        self._last_name = ""
        self.skip = skip
        self.on_skip = on_skip

    def _write_name(self, name: str) -> None:
        self._last_name = name
        encoded = _ENCODED_NAMES.get(name)
        if encoded is None:
            encoded = name.encode("utf-8", "replace")[:_NAME_BYTES].ljust(_NAME_BYTES, b"\0")
            if len(_ENCODED_NAMES) < _ENCODED_NAMES_MAX:  # t comes from the network: bounded
                _ENCODED_NAMES[name] = encoded
        self._bytes[self._name_at : self._name_at + _NAME_BYTES] = encoded

    def _skipped(self, event: Event) -> bool:
        skip = self.skip
        seq = event.seq
        # Epoch 0 is the resumed session; a fresh session's seqs start over and are not it.
        if skip is None or seq is None or event._epoch != 0 or not skip[0] <= seq <= skip[1]:
            return False
        if self.on_skip is not None:
            self.on_skip(event)
        if seq >= skip[1]:
            self.skip = None
        return True

    def enter(self, event: Event) -> bool:
        """Before the handler is called; False: the event is the poison, do not call it."""
        if self.skip is not None and self._skipped(event):
            return False
        name = event.name
        if name != self._last_name:
            self._write_name(name)
        self.words[self.at] = event.seq or -1
        return True

    def enter_batch(self, batch: list[Event]) -> list[Event]:
        """The batch without its poison events, its record written (when any is left)."""
        if self.skip is not None:
            batch = [e for e in batch if not self._skipped(e)]
        if batch:
            first = batch[0]
            if first.name != self._last_name:
                self._write_name(first.name)
            self.words[self.at + 1] = batch[-1].seq or 0
            self.words[self.at] = first.seq or -1
        return batch

    def leave(self) -> None:
        self.words[self.at] = 0

    def release(self) -> None:
        self.words.release()
        self._bytes.release()


class InFlightFile:
    """The worker's mapping of its in-flight file (or private memory when there is none:
    the records are then only seen by the watchdog)."""

    def __init__(self, path: str | None, shards: int) -> None:
        self.shards = shards
        self._slots: list[ShardSlot] = []
        size = file_size(shards)
        self._buf: mmap.mmap | bytearray
        if path is None:
            self._buf = bytearray(size)
            return
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._buf = mmap.mmap(fd, size)
        finally:
            os.close(fd)

    def slot(
        self, index: int, skip: tuple[int, int] | None = None, on_skip: OnSkip | None = None
    ) -> ShardSlot:
        slot = ShardSlot(self._buf, index, skip, on_skip)
        self._slots.append(slot)
        return slot

    def suspects(self) -> list[Suspect | None]:
        return read_suspects(bytes(self._buf[: RECORD.size * self.shards]), self.shards)

    def write_stack(self, text: str) -> None:
        data = text.encode("utf-8", "replace")[-STACK_BYTES:]
        off = RECORD.size * self.shards
        start = off + STACK_LEN.size
        self._buf[start : start + len(data)] = data
        STACK_LEN.pack_into(self._buf, off, len(data))

    def close(self) -> None:
        for slot in self._slots:
            slot.release()
        self._slots.clear()
        if isinstance(self._buf, mmap.mmap):
            self._buf.close()

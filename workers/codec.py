"""Transport decompression: zlib-stream, zstd-stream or none, behind one ``Inflater``.

One inflater belongs to one connection; a new connection makes a new one, because
feeding a fresh socket's bytes through an old context (or the reverse) corrupts both.
"""

from __future__ import annotations

import zlib
from typing import Final, Protocol

import zstandard

from workers.protocol import ZLIB_SUFFIX

COMPRESS_MODES: Final = ("zlib-stream", "zstd-stream", "payload", "none")
# The reassembly buffer is dropped rather than kept at its peak after a big message.
_SHRINK_ABOVE: Final = 1 << 20
# Compressed bytes handed to the zstd decompressor at a time for large messages.
_ZSTD_PIECE: Final = 16 * 1024


class CodecError(Exception):
    """Undecodable compressed data, or a message above the configured size limit."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind  # "bad_compression" | "oversized"


class Inflater(Protocol):
    def feed(self, chunk: bytes) -> bytes | None:
        """One websocket binary message in; a whole gateway message out, or None while a
        message spread over several frames is still incomplete."""
        ...


class ZlibStreamInflater:
    __slots__ = ("_buffer", "_inflate", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._inflate = zlib.decompressobj()
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> bytes | None:
        buffer = self._buffer
        if not buffer and chunk.endswith(ZLIB_SUFFIX):
            data: bytes | bytearray = chunk
        else:
            buffer += chunk
            if len(buffer) > self.max_bytes:
                self._buffer = bytearray()
                raise CodecError("oversized", f"compressed message above {self.max_bytes} bytes")
            if not buffer.endswith(ZLIB_SUFFIX):
                return None
            data = buffer
        try:
            out = self._inflate.decompress(data, self.max_bytes)
        except zlib.error as exc:
            raise CodecError("bad_compression", str(exc)) from exc
        finally:
            if data is buffer:
                if len(buffer) > _SHRINK_ABOVE:
                    self._buffer = bytearray()
                else:
                    buffer.clear()
        if self._inflate.unconsumed_tail:
            raise CodecError("oversized", f"inflated message above {self.max_bytes} bytes")
        return out


class ZstdStreamInflater:
    __slots__ = ("_inflate", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # Discord never ends the zstd frame: one streaming context lives as long as the
        # connection and each websocket message is exactly one gateway message.
        self._inflate = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, chunk: bytes) -> bytes | None:
        decompress = self._inflate.decompress
        try:
            if len(chunk) <= _ZSTD_PIECE:
                out: bytes = decompress(chunk)
            else:
                # The decompressor has no output cap: feed a big message in pieces and
                # stop as soon as the output passes the limit, so a decompression bomb
                # costs at most one piece's expansion, not the whole message's.
                parts: list[bytes] = []
                size = 0
                view = memoryview(chunk)
                for start in range(0, len(view), _ZSTD_PIECE):
                    part = decompress(view[start : start + _ZSTD_PIECE])
                    size += len(part)
                    if size > self.max_bytes:
                        break
                    parts.append(part)
                if size > self.max_bytes:
                    raise CodecError("oversized", f"inflated message above {self.max_bytes} bytes")
                out = b"".join(parts)
        except zstandard.ZstdError as exc:
            raise CodecError("bad_compression", str(exc)) from exc
        if len(out) > self.max_bytes:
            raise CodecError("oversized", f"inflated message above {self.max_bytes} bytes")
        # Nothing out yet: the server has not flushed the message; wait for more.
        return out or None


class PlainInflater:
    """``compress`` off: binary frames pass through (text frames never reach an inflater)."""

    __slots__ = ("max_bytes",)

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def feed(self, chunk: bytes) -> bytes | None:
        if len(chunk) > self.max_bytes:
            raise CodecError("oversized", f"message above {self.max_bytes} bytes")
        return chunk


class PayloadInflater:
    """Identify's ``compress: true`` (no transport compression): each binary frame is one
    complete zlib stream with no context shared between messages; text frames are plain
    JSON and never reach an inflater."""

    __slots__ = ("max_bytes",)

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def feed(self, chunk: bytes) -> bytes | None:
        # A fresh context per message, capped, so a decompression bomb stops at the limit.
        inflate = zlib.decompressobj()
        try:
            out = inflate.decompress(chunk, self.max_bytes)
        except zlib.error as exc:
            raise CodecError("bad_compression", str(exc)) from exc
        if inflate.unconsumed_tail:
            raise CodecError("oversized", f"inflated message above {self.max_bytes} bytes")
        if not inflate.eof:
            raise CodecError("bad_compression", "payload frame is not a complete zlib stream")
        return out


def make_inflater(mode: str, max_bytes: int) -> Inflater:
    if mode == "zlib-stream":
        return ZlibStreamInflater(max_bytes)
    if mode == "zstd-stream":
        return ZstdStreamInflater(max_bytes)
    if mode == "payload":
        return PayloadInflater(max_bytes)
    if mode == "none":
        return PlainInflater(max_bytes)
    raise ValueError(f"unknown compress mode {mode!r}; use one of {', '.join(COMPRESS_MODES)}")


def query_value(mode: str) -> str | None:
    """The ``compress`` query parameter for a mode (None: leave it out; payload compression
    is asked for in Identify, not in the URL)."""
    return None if mode in ("none", "payload") else mode

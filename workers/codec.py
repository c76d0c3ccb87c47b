"""Transport decompression: zlib-stream, zstd-stream or none, behind one ``Inflater``.

One inflater belongs to one connection; a new connection makes a new one, because
feeding a fresh socket's bytes through an old context (or the reverse) corrupts both.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final, Protocol

import zstandard

from workers.protocol import ZLIB_SUFFIX


def _fastest_zlib() -> ModuleType:
    """zlib-ng when installed (``make bench`` measures it inflating the gateway's stream in
    about 0.75x stdlib zlib's time, and keeps the worker honest about the choice: its
    ``inflate.worker_inflater_vs_fastest`` row), else stdlib zlib. Same API, same streams."""
    try:
        return importlib.import_module("zlib_ng.zlib_ng")
    except ImportError:
        return importlib.import_module("zlib")


# A module global named ``zlib`` on purpose: the benchmark swaps it to time the alternatives.
zlib: ModuleType = _fastest_zlib()

COMPRESS_MODES: Final = ("zlib-stream", "zstd-stream", "payload", "none")
# Above this, a reassembly buffer is dropped rather than kept at its peak.
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
    # The receive path calls ``feed`` for every frame: what it needs is bound once here.
    __slots__ = ("_buffer", "_decompress", "_error", "_inflate", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._inflate = zlib.decompressobj()
        self._decompress = self._inflate.decompress
        self._error: type[Exception] = zlib.error
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> bytes | None:
        if self._buffer or chunk[-4:] != ZLIB_SUFFIX:
            return self._feed_piece(chunk)
        # The common case: one whole message in one frame.
        max_bytes = self.max_bytes
        try:
            out: bytes = self._decompress(chunk, max_bytes)
        except self._error as exc:
            raise CodecError("bad_compression", str(exc)) from exc
        if len(out) >= max_bytes and self._inflate.unconsumed_tail:
            raise CodecError("oversized", f"inflated message above {max_bytes} bytes")
        return out

    def _feed_piece(self, chunk: bytes) -> bytes | None:
        """A message split over several frames: buffer until one ends with the suffix."""
        buffer = self._buffer
        buffer += chunk
        if len(buffer) > self.max_bytes:
            self._buffer = bytearray()
            raise CodecError("oversized", f"compressed message above {self.max_bytes} bytes")
        if not buffer.endswith(ZLIB_SUFFIX):
            return None
        try:
            out: bytes = self._decompress(buffer, self.max_bytes)
        except self._error as exc:
            raise CodecError("bad_compression", str(exc)) from exc
        finally:
            # The reassembly buffer is dropped rather than kept at its peak.
            if len(buffer) > _SHRINK_ABOVE:
                self._buffer = bytearray()
            else:
                buffer.clear()
        if self._inflate.unconsumed_tail:
            raise CodecError("oversized", f"inflated message above {self.max_bytes} bytes")
        return out


class ZstdStreamInflater:
    __slots__ = ("_decompress", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # Discord never ends the zstd frame: one streaming context lives as long as the
        # connection and each websocket message is exactly one gateway message.
        self._decompress = zstandard.ZstdDecompressor().decompressobj().decompress

    def feed(self, chunk: bytes) -> bytes | None:
        if len(chunk) > _ZSTD_PIECE:
            return self._feed_large(chunk)
        try:
            out: bytes = self._decompress(chunk)
        except zstandard.ZstdError as exc:
            raise CodecError("bad_compression", str(exc)) from exc
        if len(out) > self.max_bytes:
            raise CodecError("oversized", f"inflated message above {self.max_bytes} bytes")
        # Nothing out yet: the server has not flushed the message; wait for more.
        return out or None

    def _feed_large(self, chunk: bytes) -> bytes | None:
        # The decompressor has no output cap: feed a big message in pieces and stop as soon
        # as the output passes the limit, so a decompression bomb costs at most one
        # piece's expansion, not the whole message's.
        decompress = self._decompress
        parts: list[bytes] = []
        size = 0
        view = memoryview(chunk)
        try:
            for start in range(0, len(view), _ZSTD_PIECE):
                part = decompress(view[start : start + _ZSTD_PIECE])
                size += len(part)
                if size > self.max_bytes:
                    raise CodecError("oversized", f"inflated message above {self.max_bytes} bytes")
                parts.append(part)
        except zstandard.ZstdError as exc:
            raise CodecError("bad_compression", str(exc)) from exc
        return b"".join(parts) or None


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
            out: bytes = inflate.decompress(chunk, self.max_bytes)
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

"""Transport decompression: zlib-stream, zstd-stream or none, behind one ``Inflater``.

One inflater belongs to one connection; a new connection makes a new one, because
feeding a fresh socket's bytes through an old context (or the reverse) corrupts both.

Every decompress call is capped (``_STEP`` bytes of output, and never past the limit), so a
decompression bomb (32 KB of zstd can inflate to 590 MB) costs at most the limit plus a
constant before it is refused as oversized: the limit is checked while inflating, never
after.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any, Final, Protocol

from workers.protocol import ZLIB_SUFFIX

if sys.version_info >= (3, 14):
    from compression import zstd as zstd
else:  # the same module, backported: zstandard's streaming API has no output cap
    from backports import zstd as zstd


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
# zstd's window is memory the decoder allocates as the frame header asks: no larger than a
# message may be, but never below 8 MiB, the window of every standard level up to 19.
_MIN_WINDOW_LOG: Final = 23
_MAX_WINDOW_LOG: Final = 27
# Output of one decompress call: the most a message may pass the limit by before it is refused.
_STEP: Final = 64 * 1024


class CodecError(Exception):
    """Undecodable compressed data, or a message above the configured size limit."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind  # "bad_compression" | "oversized"


def _oversized(max_bytes: int) -> CodecError:
    return CodecError("oversized", f"inflated message above {max_bytes} bytes")


class Inflater(Protocol):
    def feed(self, chunk: bytes) -> bytes | None:
        """One websocket binary message in; a whole gateway message out, or None while a
        message spread over several frames is still incomplete."""
        ...


def _inflate_zlib(inflate: Any, data: bytes | bytearray, max_bytes: int) -> bytes:
    """``data`` through a zlib decompressobj, ``_STEP`` bytes of output per call, each
    step capped by what is left of the limit: a bomb is refused after at most
    ``max_bytes + 1`` bytes of output, never a whole input's worth of inflation first."""
    out: bytes = inflate.decompress(data, _STEP)
    if len(out) < _STEP:
        if len(out) > max_bytes:
            raise _oversized(max_bytes)
        return out
    return _inflate_zlib_on(inflate, out, max_bytes)


def _inflate_zlib_on(inflate: Any, first: bytes, max_bytes: int) -> bytes:
    """The rest of a message whose first step (``first``) filled up."""
    parts = [first]
    size = len(first)
    while size <= max_bytes:
        want = min(_STEP, max_bytes + 1 - size)
        # Input zlib had no room to inflate is in unconsumed_tail; output it still holds
        # comes out of the next call even when the tail is empty.
        out = inflate.decompress(inflate.unconsumed_tail, want)
        parts.append(out)
        size += len(out)
        if len(out) < want:
            return b"".join(parts)
    raise _oversized(max_bytes)


class ZlibStreamInflater:
    # The receive path calls ``feed`` for every frame: what it needs is bound once here.
    __slots__ = ("_buffer", "_decompress", "_error", "_inflate", "_step", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # A first step shorter than this held the whole message, within the limit.
        self._step = min(_STEP, max_bytes + 1)
        self._inflate = zlib.decompressobj()
        self._decompress = self._inflate.decompress
        self._error: type[Exception] = zlib.error
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> bytes | None:
        if self._buffer or chunk[-4:] != ZLIB_SUFFIX:
            return self._feed_piece(chunk)
        # The common case, one whole message in one frame and in one step, written out
        # here rather than through _inflate_zlib: a call less per message.
        try:
            out: bytes = self._decompress(chunk, self._step)
            if len(out) < self._step:
                return out
            return _inflate_zlib_on(self._inflate, out, self.max_bytes)
        except self._error as exc:
            raise CodecError("bad_compression", str(exc)) from exc

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
            return _inflate_zlib(self._inflate, buffer, self.max_bytes)
        except self._error as exc:
            raise CodecError("bad_compression", str(exc)) from exc
        finally:
            # The reassembly buffer is dropped rather than kept at its peak.
            if len(buffer) > _SHRINK_ABOVE:
                self._buffer = bytearray()
            else:
                buffer.clear()


class ZstdStreamInflater:
    """zstd-stream, read across frames.

    Discord never ends its zstd frame: one frame lives as long as the connection, flushed
    after every message, and each websocket message is exactly one gateway message. Other
    Discord-compatible servers (Spacebar) end a frame after every message; a frame may
    then also be split over websocket messages. The inflater knows the server ends frames
    once a frame has ended, or at once when the connection's first frame header declares
    its content size (only a compressor that ends the frame can); from then on a message
    is complete only at a frame's end. Several frames in one websocket message make one
    gateway message.
    """

    __slots__ = (
        "_decompress", "_ends_frames", "_first", "_pending", "_plain", "_step", "_window",
        "_zstd", "max_bytes",
    )  # fmt: skip

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # A step shorter than this held all the output there was, within the limit.
        self._step = min(_STEP, max_bytes + 1)
        window = min(max(_MIN_WINDOW_LOG, (max_bytes - 1).bit_length()), _MAX_WINDOW_LOG)
        self._window: dict[int, int] = {zstd.DecompressionParameter.window_log_max: window}
        self._zstd = zstd.ZstdDecompressor(options=self._window)
        self._decompress = self._zstd.decompress
        self._first = True
        self._ends_frames = False
        # True once the server is known to keep one frame open (Discord): feed's one-step
        # path. The first message, a large one and every frame end take _read_on.
        self._plain = False
        # A frame-ending server's message so far, while its frame spans websocket messages.
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes | None:
        try:
            out: bytes = self._decompress(chunk, self._step)
        except zstd.ZstdError as exc:
            raise CodecError("bad_compression", str(exc)) from exc
        if self._plain and len(out) < self._step and not self._zstd.eof:
            # Nothing out yet: the server has not flushed the message; wait for more.
            return out or None
        return self._read_on(chunk, out)

    def _read_on(self, chunk: bytes, out: bytes) -> bytes | None:
        """The connection's first message, a large message (read in capped steps), or a
        frame's end (read on into the next frame, a new decompressor, carrying over the
        bytes after the end)."""
        if self._first:
            self._first = False
            self._ends_frames = _declares_content_size(chunk)
        parts = [self._pending, out]
        size = len(self._pending) + len(out)
        more = len(out) >= self._step  # the last call may have stopped with output inside
        try:
            while size <= self.max_bytes:
                want = min(_STEP, self.max_bytes + 1 - size)
                if self._zstd.eof:
                    self._ends_frames = True
                    rest = self._zstd.unused_data
                    self._zstd = zstd.ZstdDecompressor(options=self._window)
                    self._decompress = self._zstd.decompress
                    if not rest:
                        self._pending = b""
                        return b"".join(parts) or None
                    out = self._decompress(rest, want)
                elif more:
                    out = self._decompress(b"", want)
                else:
                    break
                more = len(out) >= want
                parts.append(out)
                size += len(out)
        except zstd.ZstdError as exc:
            raise CodecError("bad_compression", str(exc)) from exc
        finally:
            self._plain = not self._ends_frames
        if size > self.max_bytes:
            self._pending = b""
            raise _oversized(self.max_bytes)
        message = b"".join(parts)
        if not self._ends_frames:
            return message or None
        # A frame-ending server's frame goes on in the next websocket message.
        self._pending = message
        return None


def _declares_content_size(chunk: bytes) -> bool:
    try:
        return zstd.get_frame_info(chunk).decompressed_size is not None
    except zstd.ZstdError:  # a header split over messages, or not zstd: decoding will tell
        return False


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
        inflate = zlib.decompressobj()
        try:
            out = _inflate_zlib(inflate, chunk, self.max_bytes)
        except zlib.error as exc:
            raise CodecError("bad_compression", str(exc)) from exc
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

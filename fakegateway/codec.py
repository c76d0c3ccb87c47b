"""Server-side transport encoding of gateway messages: plain text frames, zlib-stream,
zstd-stream, and Identify's per-message payload compression. One encoder per connection,
because both stream formats carry one compression context for the connection's life."""

from __future__ import annotations

import os
import zlib
from typing import Final, Literal

import zstandard

from workers.protocol import ZLIB_SUFFIX

Compress = Literal["none", "zlib-stream", "zstd-stream"]
COMPRESS_MODES: Final[dict[str | None, Compress]] = {
    None: "none",
    "": "none",
    "zlib-stream": "zlib-stream",
    "zstd-stream": "zstd-stream",
}

# A frame is (data, binary?).
Frame = tuple[bytes, bool]


def split_zlib_message(data: bytes, size: int) -> list[bytes]:
    """Cut one zlib-stream message (ending in the flush suffix) into pieces of at most
    ``size`` bytes (``size`` 0: whole). Clients such as discord.py look for the suffix at
    the end of each frame, so the last piece holds all four suffix bytes and no earlier piece
    ends with them. ``size`` must be 0 or at least the suffix's length."""
    if size <= 0 or len(data) <= size:
        return [data]
    if size < len(ZLIB_SUFFIX):
        raise ValueError(f"chunk size {size} cannot hold the {len(ZLIB_SUFFIX)}-byte suffix")
    last_start = len(data) - len(ZLIB_SUFFIX)
    pieces: list[bytes] = []
    start = 0
    while len(data) - start > size:
        end = min(start + size, last_start)
        if data[start:end].endswith(ZLIB_SUFFIX):
            end -= 1
        pieces.append(data[start:end])
        start = end
    pieces.append(data[start:])
    return pieces


class Encoder:
    """Turns whole gateway messages into websocket frames for one connection."""

    __slots__ = ("_zlib", "_zstd", "chunk_bytes", "mode", "payload_threshold", "payload_zlib")

    def __init__(self, mode: Compress, *, chunk_bytes: int = 0, payload_threshold: int = 4096):
        self.mode = mode
        self.chunk_bytes = chunk_bytes
        # Identify's compress=true only matters without transport compression.
        self.payload_zlib = False
        self.payload_threshold = payload_threshold
        self._zlib = zlib.compressobj() if mode == "zlib-stream" else None
        self._zstd = (
            zstandard.ZstdCompressor(level=3).compressobj() if mode == "zstd-stream" else None
        )

    def encode(self, message: bytes) -> list[Frame]:
        if self._zlib is not None:
            data = self._zlib.compress(message) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            return self._split(data)
        if self._zstd is not None:
            data = self._zstd.compress(message) + self._zstd.flush(
                zstandard.COMPRESSOBJ_FLUSH_BLOCK
            )
            return [(data, True)]
        if self.payload_zlib and len(message) > self.payload_threshold:
            return [(zlib.compress(message), True)]
        return [(message, False)]

    def _split(self, data: bytes) -> list[Frame]:
        return [(piece, True) for piece in split_zlib_message(data, self.chunk_bytes)]

    def corrupt(self) -> list[Frame]:
        """Bytes the client's decompressor must reject. For zlib-stream they end in the
        flush suffix so that a client actually tries to inflate them."""
        junk = b"\xff\xfe" + os.urandom(62)
        if self.mode == "zlib-stream":
            return [(junk + ZLIB_SUFFIX, True)]
        if self.mode == "zstd-stream":
            return [(junk, True)]
        # No transport compression: a binary frame is a payload-compressed message.
        return [(b"\x78\x9c" + junk, True)]

    def endless(self, total: int) -> list[Frame]:
        """``total`` bytes of deflate data that never reach a flush point, so a zlib-stream
        client never sees the ``00 00 FF FF`` suffix and keeps buffering."""
        frames: list[Frame] = []
        if self._zlib is None:
            chunk = os.urandom(min(total, 65536)) if total else b""
            sent = 0
            while sent < total:
                piece = chunk[: total - sent]
                frames.append((piece.rstrip(b"\xff") + b"\x01", True))
                sent += len(piece)
            return frames
        # Stored-block output of incompressible data: valid deflate, no sync flush.
        fed = 0
        while fed < total:
            block = os.urandom(min(65536, total - fed))
            fed += len(block)
            data = self._zlib.compress(block)
            if data:
                frames.append((data, True))
        return frames

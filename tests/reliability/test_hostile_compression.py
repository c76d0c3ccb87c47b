"""Decompression bombs: a small compressed input that inflates far above
``max_message_bytes`` is refused as oversized while inflating, never after the whole output
exists. Memory is measured with tracemalloc: the peak while feeding the bomb stays within
the limit plus a small constant."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest
import zstandard

from workers.codec import CodecError, Inflater, make_inflater

LIMIT = 256 * 1024
INFLATED = 64 * 1024 * 1024  # 256x the limit
# What feeding may allocate besides the capped output: a copy of the (small) input, the
# decompressor's bookkeeping. Far below what any uncapped decompress of a bomb allocates.
SLACK = 256 * 1024


def zlib_stream_bomb() -> bytes:
    c = zlib.compressobj(9)
    return c.compress(bytes(INFLATED)) + c.flush(zlib.Z_SYNC_FLUSH)


def zstd_stream_bomb() -> bytes:
    c = zstandard.ZstdCompressor(level=19).compressobj()
    return c.compress(bytes(INFLATED)) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


def zstd_frame(payload: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(payload)


def peak_while_refusing(inflater: Inflater, frames: list[bytes]) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(CodecError) as err:
            for frame in frames:
                inflater.feed(frame)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        assert err.value.kind == "oversized"


def test_the_bombs_are_small() -> None:
    assert len(zlib_stream_bomb()) < INFLATED // 500
    assert len(zstd_stream_bomb()) < INFLATED // 500


def test_a_zlib_stream_bomb_is_refused_within_the_limit() -> None:
    bomb = zlib_stream_bomb()
    assert peak_while_refusing(make_inflater("zlib-stream", LIMIT), [bomb]) < LIMIT + SLACK


def test_a_zlib_stream_bomb_split_over_frames_is_refused_within_the_limit() -> None:
    bomb = zlib_stream_bomb()
    half = len(bomb) // 2
    inflater = make_inflater("zlib-stream", LIMIT)
    assert peak_while_refusing(inflater, [bomb[:half], bomb[half:]]) < LIMIT + SLACK


def test_a_zstd_stream_bomb_is_refused_within_the_limit() -> None:
    bomb = zstd_stream_bomb()
    assert peak_while_refusing(make_inflater("zstd-stream", LIMIT), [bomb]) < LIMIT + SLACK


def test_a_zstd_bomb_in_a_second_frame_of_one_message_is_refused_within_the_limit() -> None:
    """A server that ends its frames: the bomb is a whole frame after a small one."""
    hello = zstd_frame(b'{"op":10,"d":{"heartbeat_interval":41250}}')
    bomb = zstd_frame(bytes(INFLATED))
    inflater = make_inflater("zstd-stream", LIMIT)
    assert inflater.feed(hello) is not None
    assert peak_while_refusing(inflater, [hello + bomb]) < LIMIT + SLACK


def test_a_zstd_bomb_frame_split_over_messages_is_refused_within_the_limit() -> None:
    hello = zstd_frame(b'{"op":10,"d":{"heartbeat_interval":41250}}')
    bomb = zstd_frame(bytes(INFLATED))
    inflater = make_inflater("zstd-stream", LIMIT)
    assert inflater.feed(hello) is not None
    # Each piece inflates to less than the limit; together they pass it.
    pieces = [bomb[i : i + 8] for i in range(0, len(bomb), 8)]
    assert peak_while_refusing(inflater, pieces) < LIMIT + SLACK


def test_a_payload_compression_bomb_is_refused_within_the_limit() -> None:
    bomb = zlib.compress(bytes(INFLATED), 9)
    assert peak_while_refusing(make_inflater("payload", LIMIT), [bomb]) < LIMIT + SLACK


def test_a_zstd_frame_asking_for_a_huge_window_is_refused() -> None:
    """The window is memory the decoder allocates as the frame header asks: a frame that
    asks for 64 MiB (window_log 26; zstd's own default accepts up to 27) with a 256 KiB
    limit is refused before decoding."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=26)
    c = zstandard.ZstdCompressor(compression_params=params).compressobj()
    frame = c.compress(b'{"op":11}') + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    with pytest.raises(CodecError) as err:
        make_inflater("zstd-stream", LIMIT).feed(frame)
    assert err.value.kind == "bad_compression"

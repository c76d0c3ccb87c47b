"""Inflaters: zlib-stream reassembly at the sync-flush suffix, zstd-stream, none."""

from __future__ import annotations

import importlib
import random
import zlib
from types import ModuleType

import pytest
import zstandard

from workers import codec
from workers.codec import CodecError, make_inflater

MESSAGES = [b'{"op":10,"d":{"heartbeat_interval":41250}}', b'{"op":11,"d":null}' * 50]


def zlib_frames(messages: list[bytes]) -> list[bytes]:
    c = zlib.compressobj()
    return [c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH) for m in messages]


def zstd_frames(messages: list[bytes]) -> list[bytes]:
    c = zstandard.ZstdCompressor().compressobj()
    return [c.compress(m) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) for m in messages]


def one_frame(mode: str, payload: bytes) -> bytes:
    if mode == "zlib-stream":
        return zlib_frames([payload])[0]
    if mode == "zstd-stream":
        return zstd_frames([payload])[0]
    return zlib.compress(payload)


def test_zlib_stream_inflates_consecutive_messages_with_one_context() -> None:
    inflater = make_inflater("zlib-stream", 1 << 20)
    assert [inflater.feed(f) for f in zlib_frames(MESSAGES)] == MESSAGES


def test_zlib_stream_reassembles_a_message_split_over_frames() -> None:
    inflater = make_inflater("zlib-stream", 1 << 20)
    frame = zlib_frames([MESSAGES[1]])[0]
    parts = [frame[:5], frame[5:9], frame[9:]]
    assert inflater.feed(parts[0]) is None
    assert inflater.feed(parts[1]) is None
    assert inflater.feed(parts[2]) == MESSAGES[1]


def test_zlib_stream_new_connection_needs_a_new_context() -> None:
    first = zlib_frames(MESSAGES)
    second = zlib_frames(MESSAGES)
    inflater = make_inflater("zlib-stream", 1 << 20)
    inflater.feed(first[0])
    with pytest.raises(CodecError):
        inflater.feed(second[0])  # a fresh stream's header through an old context
    assert make_inflater("zlib-stream", 1 << 20).feed(second[0]) == MESSAGES[0]


def test_zlib_stream_corrupt_data_raises_bad_compression() -> None:
    inflater = make_inflater("zlib-stream", 1 << 20)
    with pytest.raises(CodecError) as err:
        inflater.feed(b"\x00garbage\x00\x00\xff\xff")
    assert err.value.kind == "bad_compression"


def test_zlib_stream_message_above_limit_raises_oversized() -> None:
    inflater = make_inflater("zlib-stream", 100)
    with pytest.raises(CodecError) as err:
        inflater.feed(zlib_frames([b"x" * 1000])[0])
    assert err.value.kind == "oversized"


def test_zlib_stream_unterminated_buffer_above_limit_raises_oversized() -> None:
    inflater = make_inflater("zlib-stream", 100)
    with pytest.raises(CodecError) as err:
        for _ in range(10):
            inflater.feed(b"y" * 30)
    assert err.value.kind == "oversized"


def test_zstd_stream_inflates_consecutive_messages_of_one_unended_frame() -> None:
    inflater = make_inflater("zstd-stream", 1 << 20)
    assert [inflater.feed(f) for f in zstd_frames(MESSAGES)] == MESSAGES


def test_zstd_stream_corrupt_data_raises_bad_compression() -> None:
    inflater = make_inflater("zstd-stream", 1 << 20)
    with pytest.raises(CodecError) as err:
        inflater.feed(b"not zstd at all")
    assert err.value.kind == "bad_compression"


def test_zstd_stream_message_above_limit_raises_oversized() -> None:
    inflater = make_inflater("zstd-stream", 100)
    with pytest.raises(CodecError) as err:
        inflater.feed(zstd_frames([b"z" * 1000])[0])
    assert err.value.kind == "oversized"


def test_none_passes_messages_through() -> None:
    assert make_inflater("none", 1000).feed(MESSAGES[0]) == MESSAGES[0]


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="compress mode"):
        make_inflater("gzip", 10)


def test_zstd_large_message_above_the_limit_is_oversized() -> None:
    rng = random.Random(2)
    payload = bytes(rng.getrandbits(8) for _ in range(100_000))  # spans several pieces
    compressor = zstandard.ZstdCompressor().compressobj()
    frame = compressor.compress(payload) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    inflater = make_inflater("zstd-stream", 50_000)
    with pytest.raises(CodecError) as err:
        inflater.feed(frame)
    assert err.value.kind == "oversized"


def test_zstd_large_message_within_the_limit_inflates_whole() -> None:
    rng = random.Random(3)
    payload = bytes(rng.getrandbits(8) for _ in range(100_000))
    compressor = zstandard.ZstdCompressor().compressobj()
    frame = compressor.compress(payload) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    assert len(frame) > 16 * 1024
    assert make_inflater("zstd-stream", 200_000).feed(frame) == payload


def test_zlib_stream_inflates_with_zlib_ng_when_it_is_installed() -> None:
    from zlib_ng import zlib_ng

    assert codec.zlib is zlib_ng


def test_zlib_stream_falls_back_to_stdlib_zlib_without_zlib_ng(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = importlib.import_module

    def without_zlib_ng(name: str) -> ModuleType:
        if name.startswith("zlib_ng"):
            raise ImportError(name)
        return real_import(name)

    monkeypatch.setattr(importlib, "import_module", without_zlib_ng)
    assert codec._fastest_zlib() is zlib


def test_zlib_stream_with_stdlib_zlib_inflates_and_reports_corruption(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(codec, "zlib", zlib)
    inflater = make_inflater("zlib-stream", 1 << 20)
    assert [inflater.feed(f) for f in zlib_frames(MESSAGES)] == MESSAGES
    with pytest.raises(CodecError) as err:
        make_inflater("zlib-stream", 1 << 20).feed(b"\x00garbage\x00\x00\xff\xff")
    assert err.value.kind == "bad_compression"


@pytest.mark.parametrize("mode", ["zlib-stream", "zstd-stream", "payload"])
def test_a_message_of_several_inflate_steps_comes_out_whole(mode: str) -> None:
    rng = random.Random(4)
    payload = bytes(rng.getrandbits(8) for _ in range(50_000)) * 6  # several 64 KiB steps
    frame = one_frame(mode, payload)
    assert make_inflater(mode, len(payload)).feed(frame) == payload


@pytest.mark.parametrize("mode", ["zlib-stream", "zstd-stream", "payload"])
def test_a_message_one_byte_above_the_limit_is_oversized(mode: str) -> None:
    payload = b"a" * 200_001
    frame = one_frame(mode, payload)
    assert make_inflater(mode, 200_001).feed(frame) == payload
    with pytest.raises(CodecError) as err:
        make_inflater(mode, 200_000).feed(frame)
    assert err.value.kind == "oversized"


def ended_frames(messages: list[bytes]) -> list[bytes]:
    """What Spacebar sends: every message its own complete zstd frame, streamed (no size
    in the header) like a compressor that is flushed and ended per message."""
    out = []
    for m in messages:
        c = zstandard.ZstdCompressor().compressobj()
        out.append(c.compress(m) + c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
    return out


def test_zstd_stream_reads_across_frames_ended_after_every_message() -> None:
    inflater = make_inflater("zstd-stream", 1 << 20)
    assert [inflater.feed(f) for f in ended_frames(MESSAGES * 3)] == MESSAGES * 3


def test_zstd_stream_reassembles_an_ended_frame_split_over_websocket_messages() -> None:
    inflater = make_inflater("zstd-stream", 1 << 20)
    hello, big = ended_frames(MESSAGES)
    assert inflater.feed(hello) == MESSAGES[0]
    assert inflater.feed(big[:7]) is None
    assert inflater.feed(big[7:20]) is None
    assert inflater.feed(big[20:]) == MESSAGES[1]
    assert inflater.feed(hello) == MESSAGES[0]


def test_zstd_stream_reassembles_a_first_frame_that_declares_its_size() -> None:
    """A one-shot compressor writes the content size into the header: the frame will end,
    so even the connection's first message may be split."""
    rng = random.Random(5)
    message = bytes(rng.getrandbits(8) for _ in range(300_000))  # three zstd blocks
    frame = zstandard.ZstdCompressor().compress(message)
    inflater = make_inflater("zstd-stream", 1 << 20)
    assert inflater.feed(frame[:-100]) is None  # whole blocks in: output, but no frame end
    assert inflater.feed(frame[-100:]) == message


def test_zstd_stream_joins_a_message_sent_as_several_frames() -> None:
    message = MESSAGES[1]
    head, tail = ended_frames([message[:300], message[300:]])
    inflater = make_inflater("zstd-stream", 1 << 20)
    assert inflater.feed(head + tail) == message


def test_zstd_stream_carries_a_frame_start_over_a_frame_end() -> None:
    message = MESSAGES[1]
    head, tail = ended_frames([message[:300], message[300:]])
    inflater = make_inflater("zstd-stream", 1 << 20)
    assert inflater.feed(head + tail[:5]) is None  # the next frame's header, cut short
    assert inflater.feed(tail[5:]) == message


def test_zstd_stream_corrupt_bytes_after_a_frame_end_raise_bad_compression() -> None:
    first = ended_frames(MESSAGES[:1])[0]
    inflater = make_inflater("zstd-stream", 1 << 20)
    with pytest.raises(CodecError) as err:
        inflater.feed(first + b"not a zstd frame")
    assert err.value.kind == "bad_compression"

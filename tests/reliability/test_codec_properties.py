"""Hostile bytes through the worker's inflaters (``workers.codec``): whatever arrives, an
inflater either returns data or raises ``CodecError`` (which the shard turns into a counted
close-and-resume), never anything else, and never buffers more than its limit."""

from __future__ import annotations

import contextlib
import zlib

import msgspec
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.codec import CodecError, Inflater, make_inflater
from workers.protocol import ZLIB_SUFFIX, decode_envelope

LIMIT = 64 * 1024
MODES = ("zlib-stream", "zstd-stream", "none")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
messages = st.builds(
    lambda op, d, s, t: msgspec.json.encode({"op": op, "d": d, "s": s, "t": t}),
    st.integers(0, 11),
    json_values,
    st.none() | st.integers(1, 2**31),
    st.none() | st.sampled_from(["MESSAGE_CREATE", "GUILD_CREATE", "READY", "WHATEVER"]),
)


def zlib_frames(payloads: list[bytes]) -> list[bytes]:
    c = zlib.compressobj()
    return [c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH) for p in payloads]


def zstd_frames(payloads: list[bytes]) -> list[bytes]:
    c = zstandard.ZstdCompressor().compressobj()
    return [c.compress(p) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) for p in payloads]


def split_anywhere(whole: bytes, data: st.DataObject) -> list[bytes]:
    cuts = sorted(data.draw(st.sets(st.integers(1, len(whole) - 1), max_size=3)))
    return [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]


def feed_all(inflater: Inflater, frames: list[bytes]) -> list[bytes]:
    out = []
    for frame in frames:
        got = inflater.feed(frame)
        if got is not None:
            out.append(got)
    return out


def survives(inflater: Inflater, frames: list[bytes]) -> None:
    """The only exception an inflater may raise is CodecError; anything it returns is bytes
    within the limit."""
    for frame in frames:
        try:
            got = inflater.feed(frame)
        except CodecError as exc:
            assert exc.kind in {"bad_compression", "oversized"}
            return
        assert got is None or (isinstance(got, bytes | bytearray) and len(got) <= LIMIT)


@FAST
@given(
    mode=st.sampled_from(MODES), frames=st.lists(st.binary(min_size=1, max_size=2048), max_size=8)
)
def test_random_bytes_either_inflate_or_raise_codec_error(mode: str, frames: list[bytes]) -> None:
    survives(make_inflater(mode, LIMIT), frames)


@FAST
@given(
    mode=st.sampled_from(MODES), frames=st.lists(st.binary(min_size=1, max_size=256), max_size=6)
)
def test_random_bytes_with_a_sync_flush_suffix_never_crash(mode: str, frames: list[bytes]) -> None:
    survives(make_inflater(mode, LIMIT), [f + ZLIB_SUFFIX for f in frames])


@FAST
@given(payloads=st.lists(messages, min_size=1, max_size=6), data=st.data())
def test_zlib_messages_split_over_frames_come_out_whole(
    payloads: list[bytes], data: st.DataObject
) -> None:
    frames = []
    for whole in zlib_frames(payloads):
        # split each message's bytes anywhere but never so that an inner piece ends in the
        # suffix (the only end-of-message marker the protocol gives)
        pieces = split_anywhere(whole, data)
        if any(p.endswith(ZLIB_SUFFIX) for p in pieces[:-1]):
            pieces = [whole]
        frames += pieces
    assert feed_all(make_inflater("zlib-stream", LIMIT), frames) == payloads


@FAST
@given(payloads=st.lists(messages, min_size=1, max_size=6))
def test_zstd_messages_come_out_one_per_frame(payloads: list[bytes]) -> None:
    assert feed_all(make_inflater("zstd-stream", LIMIT), zstd_frames(payloads)) == payloads


@FAST
@given(payloads=st.lists(messages, min_size=2, max_size=6), data=st.data())
def test_zstd_messages_in_ended_frames_split_anywhere_come_out_whole(
    payloads: list[bytes], data: st.DataObject
) -> None:
    """A server that ends each message's frame (Spacebar). Its first message (Hello) comes
    whole: only a frame end tells a streamed frame's server apart from Discord's."""
    frames = []
    for p in payloads:
        c = zstandard.ZstdCompressor().compressobj()
        frames.append(c.compress(p) + c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
    pieces = [frames[0]]
    for whole in frames[1:]:
        pieces += split_anywhere(whole, data)
    assert feed_all(make_inflater("zstd-stream", LIMIT), pieces) == payloads


@FAST
@given(
    mode=st.sampled_from(["zlib-stream", "zstd-stream"]),
    payloads=st.lists(messages, min_size=1, max_size=4),
    data=st.data(),
)
def test_corrupted_streams_never_raise_anything_but_codec_error(
    mode: str, payloads: list[bytes], data: st.DataObject
) -> None:
    frames = zlib_frames(payloads) if mode == "zlib-stream" else zstd_frames(payloads)
    i = data.draw(st.integers(0, len(frames) - 1))
    frame = bytearray(frames[i])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] ^= data.draw(st.integers(1, 255))
    frames[i] = bytes(frame)
    survives(make_inflater(mode, LIMIT), frames)


@FAST
@given(
    mode=st.sampled_from(["zlib-stream", "zstd-stream"]),
    payloads=st.lists(messages, min_size=1, max_size=4),
    data=st.data(),
)
def test_truncated_streams_never_raise_anything_but_codec_error(
    mode: str, payloads: list[bytes], data: st.DataObject
) -> None:
    frames = zlib_frames(payloads) if mode == "zlib-stream" else zstd_frames(payloads)
    i = data.draw(st.integers(0, len(frames) - 1))
    frames[i] = frames[i][: data.draw(st.integers(0, len(frames[i]) - 1))] or b"\x00"
    survives(make_inflater(mode, LIMIT), frames)


@FAST
@given(
    mode=st.sampled_from(["zlib-stream", "zstd-stream"]), payloads=st.lists(messages, max_size=3)
)
def test_a_fresh_inflater_works_after_a_corrupt_connection(
    mode: str, payloads: list[bytes]
) -> None:
    broken = make_inflater(mode, LIMIT)
    with pytest.raises(CodecError):
        for _ in range(4):
            broken.feed(b"\xde\xad\xbe\xef" * 8 + ZLIB_SUFFIX)
    frames = zlib_frames(payloads) if mode == "zlib-stream" else zstd_frames(payloads)
    assert feed_all(make_inflater(mode, LIMIT), frames) == payloads


@pytest.mark.parametrize("mode", ["zlib-stream", "zstd-stream", "none"])
def test_a_message_above_the_limit_is_refused_as_oversized(mode: str) -> None:
    big = msgspec.json.encode({"op": 0, "d": "x" * (LIMIT + 1), "s": 1, "t": "GUILD_CREATE"})
    frames = (
        zlib_frames([big])
        if mode == "zlib-stream"
        else zstd_frames([big])
        if mode == "zstd-stream"
        else [big]
    )
    with pytest.raises(CodecError) as err:
        feed_all(make_inflater(mode, LIMIT), frames)
    assert err.value.kind == "oversized"


def test_a_zlib_message_that_never_ends_is_cut_off_at_the_limit() -> None:
    """No sync-flush suffix ever: the reassembly buffer must not grow past the limit."""
    inflater = make_inflater("zlib-stream", LIMIT)
    chunk = zlib.compress(b"x" * 100)[:-1] + b"\x01" * 4000
    fed = 0
    with pytest.raises(CodecError) as err:
        while fed <= 4 * LIMIT:
            assert inflater.feed(chunk) is None
            fed += len(chunk)
    assert err.value.kind == "oversized"
    assert fed <= LIMIT


def test_zlib_inflater_recovers_its_buffer_after_the_oversized_cut() -> None:
    """After the cut the shard reconnects with a new inflater; the old one holds nothing."""
    inflater = make_inflater("zlib-stream", LIMIT)
    with pytest.raises(CodecError):
        for _ in range(LIMIT // 1000 + 2):
            inflater.feed(b"\x01" * 1000)
    assert len(getattr(inflater, "_buffer", b"")) == 0


@FAST
@given(raw=st.binary(max_size=512))
def test_envelope_decoding_of_random_bytes_raises_only_decode_error(raw: bytes) -> None:
    with contextlib.suppress(msgspec.DecodeError):
        decode_envelope(raw)

"""``split_zlib_message``: how a zlib-stream message is cut into frames."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakegateway.codec import split_zlib_message
from workers.protocol import ZLIB_SUFFIX


def _message(payload: bytes) -> bytes:
    z = zlib.compressobj()
    return z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH)


@pytest.mark.parametrize(
    ("data", "size", "expected"),
    [
        (b"abcd" + ZLIB_SUFFIX, 0, [b"abcd" + ZLIB_SUFFIX]),
        (b"abcd" + ZLIB_SUFFIX, 8, [b"abcd" + ZLIB_SUFFIX]),
        # 9 bytes in frames of 4 would leave 1 suffix byte alone: the suffix stays whole.
        (b"abcde" + ZLIB_SUFFIX, 4, [b"abcd", b"e", ZLIB_SUFFIX]),
        (b"abcdef" + ZLIB_SUFFIX, 5, [b"abcde", b"f" + ZLIB_SUFFIX]),
        # A piece that would end with the suffix bytes is cut one byte earlier.
        (ZLIB_SUFFIX + b"xyz" + ZLIB_SUFFIX, 4, [ZLIB_SUFFIX[:3], b"\xffxyz", ZLIB_SUFFIX]),
    ],
)
def test_split_table(data, size, expected):
    assert split_zlib_message(data, size) == expected


def test_chunk_smaller_than_the_suffix_is_refused():
    with pytest.raises(ValueError, match="suffix"):
        split_zlib_message(b"abcdef" + ZLIB_SUFFIX, 3)


@given(st.binary(max_size=3000), st.integers(min_value=4, max_value=300))
def test_every_split_reassembles_and_only_the_last_frame_ends_with_the_suffix(payload, size):
    data = _message(payload)
    pieces = split_zlib_message(data, size)
    assert b"".join(pieces) == data
    assert all(0 < len(p) <= size for p in pieces)
    assert pieces[-1].endswith(ZLIB_SUFFIX)
    assert not any(p.endswith(ZLIB_SUFFIX) for p in pieces[:-1])

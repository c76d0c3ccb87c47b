"""The benchmark corpus is deterministic, realistic in shape, and framed as the gateway does."""

from __future__ import annotations

import json
import zlib

import zstandard

from bench import corpus


def test_same_seed_gives_identical_bytes() -> None:
    a = corpus.build(300, quick=True)
    b = corpus.build(300, quick=True)
    assert a.messages == b.messages
    assert a.zlib_frames == b.zlib_frames
    assert a.zstd_frames == b.zstd_frames


def test_different_seed_gives_different_events() -> None:
    a, _, _ = corpus.generate_messages(50, seed=1, guild_sizes=(50_000,))
    b, _, _ = corpus.generate_messages(50, seed=2, guild_sizes=(50_000,))
    assert a != b


def test_messages_are_gateway_envelopes_with_increasing_seq() -> None:
    c = corpus.build(500, quick=True)
    docs = [json.loads(m) for m in c.messages]
    assert all(set(d) == {"t", "s", "op", "d"} for d in docs)
    assert docs[0]["op"] == 10
    assert docs[1]["t"] == "READY" and docs[1]["s"] == 1
    seqs = [d["s"] for d in docs if d["op"] == 0]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) == c.dispatches
    assert any(d["op"] == 11 for d in docs)


def test_guild_creates_fall_in_the_requested_size_range() -> None:
    msgs, _, largest = corpus.generate_messages(0, guild_sizes=(50_000, 500_000))
    sizes = [len(m) for m in msgs if b'"GUILD_CREATE"' in m[:40]]
    assert len(sizes) == 2
    assert 50_000 <= sizes[0] < 60_000
    assert 500_000 <= sizes[1] < 510_000
    assert len(largest) == sizes[1]


def test_steady_state_mix_is_dominated_by_small_high_rate_events() -> None:
    c = corpus.build(2_000, quick=True)
    names = [json.loads(m)["t"] for m in c.messages]
    top = {"MESSAGE_CREATE", "PRESENCE_UPDATE", "TYPING_START"}
    assert sum(1 for n in names if n in top) > len(names) / 2


def test_zlib_frames_inflate_back_to_the_messages_with_some_split() -> None:
    c = corpus.build(500, quick=True)
    assert len(c.zlib_frames) > len(c.messages)  # some messages span several frames
    d = zlib.decompressobj()
    out: list[bytes] = []
    buf = b""
    for frame in c.zlib_frames:
        buf += frame
        if buf.endswith(corpus.ZLIB_SUFFIX):
            out.append(d.decompress(buf))
            buf = b""
    assert buf == b""
    assert out == c.messages


def test_zstd_frames_are_one_message_each_in_one_unended_stream() -> None:
    c = corpus.build(200, quick=True)
    assert len(c.zstd_frames) == len(c.messages)
    assert c.zstd_frames[0][:4] == b"\x28\xb5\x2f\xfd"
    d = zstandard.ZstdDecompressor().decompressobj()
    assert [d.decompress(f) for f in c.zstd_frames] == c.messages

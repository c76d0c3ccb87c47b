"""The memory floor for idle shards: RSS of N bare decompression contexts that each inflated
the same messages a shard received (its READY and GUILD_CREATEs), measured in a fresh
process so nothing else moves its RSS.

Run as ``python -m bench.memfloor {zlib|zstd} N FILE`` (FILE: the messages, one JSON document
per line); prints the RSS growth per context in bytes.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zstandard


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _stream(codec: str, messages: Sequence[bytes]) -> tuple[list[bytes], Callable[[], Any]]:
    """The messages compressed as one gateway stream, and a factory of fresh contexts."""
    if codec == "zlib":
        comp = zlib.compressobj()
        frames = [comp.compress(m) + comp.flush(zlib.Z_SYNC_FLUSH) for m in messages]
        return frames, zlib.decompressobj
    if codec == "zstd":
        zc = zstandard.ZstdCompressor(level=3).compressobj()
        frames = [zc.compress(m) + zc.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) for m in messages]
        return frames, lambda: zstandard.ZstdDecompressor().decompressobj()
    raise SystemExit(f"unknown codec {codec!r}")


def _per_context(codec: str, n: int, messages: Sequence[bytes]) -> float:
    frames, make = _stream(codec, messages)
    expected = sum(len(m) for m in messages)
    # One warm-up context, so first-use allocations (module state, arenas) are not counted.
    warm = make()
    for f in frames:
        warm.decompress(f)
    del warm
    gc.collect()
    before = rss_bytes()
    keep = []
    for _ in range(n):
        ctx = make()
        got = 0
        for f in frames:
            got += len(ctx.decompress(f))
        if got != expected:
            raise RuntimeError("a context did not inflate every message")
        keep.append(ctx)
    gc.collect()
    return (rss_bytes() - before) / n


def measure(codec: str, n: int, messages: Sequence[bytes]) -> float:
    """Bytes of RSS per context, measured in a child process."""
    if any(b"\n" in m for m in messages):
        raise ValueError("messages must be compact JSON (no newlines)")
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as f:
        f.write(b"\n".join(messages))
        f.flush()
        out = subprocess.run(
            [sys.executable, "-m", "bench.memfloor", codec, str(n), f.name],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    return float(out.stdout.strip())


def main(argv: list[str]) -> int:
    codec, n, path = argv[0], int(argv[1]), argv[2]
    messages = Path(path).read_bytes().split(b"\n")
    print(_per_context(codec, n, messages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

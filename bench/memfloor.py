"""The memory floor for idle shards: RSS of N bare decompression contexts that each inflated
the same GUILD_CREATE, measured in a fresh process so nothing else moves its RSS.

Run as ``python -m bench.memfloor {zlib|zstd} N FILE`` (FILE holds the GUILD_CREATE JSON);
prints the RSS growth per context in bytes.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import zstandard


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _per_context(codec: str, n: int, message: bytes) -> float:
    if codec == "zlib":
        comp = zlib.compressobj()
        data = comp.compress(message) + comp.flush(zlib.Z_SYNC_FLUSH)

        def make() -> Any:
            return zlib.decompressobj()
    elif codec == "zstd":
        zc = zstandard.ZstdCompressor(level=3).compressobj()
        data = zc.compress(message) + zc.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

        def make() -> Any:
            return zstandard.ZstdDecompressor().decompressobj()
    else:
        raise SystemExit(f"unknown codec {codec!r}")
    # One warm-up context, so first-use allocations (module state, arenas) are not counted.
    warm = make()
    warm.decompress(data)
    del warm
    gc.collect()
    before = rss_bytes()
    keep = []
    for _ in range(n):
        ctx = make()
        out = ctx.decompress(data)
        if len(out) != len(message):
            raise RuntimeError("context did not inflate the whole message")
        del out
        keep.append(ctx)
    gc.collect()
    return (rss_bytes() - before) / n


def measure(codec: str, n: int, message: bytes) -> float:
    """Bytes of RSS per context, measured in a child process."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(message)
        f.flush()
        out = subprocess.run(
            [sys.executable, "-m", "bench.memfloor", codec, str(n), f.name],
            check=True, capture_output=True, text=True, timeout=120,
        )
    return float(out.stdout.strip())


def main(argv: list[str]) -> int:
    codec, n, path = argv[0], int(argv[1]), argv[2]
    print(_per_context(codec, n, Path(path).read_bytes()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

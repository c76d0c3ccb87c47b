"""``shardmgr.handlers``: log, null, jsonl (safe with several processes appending)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import msgspec
import pytest

from shardmgr import handlers
from workers.events import Event
from workers.handlers import load_handler


def event(seq: int, name: str = "MESSAGE_CREATE") -> Event:
    return Event(2, seq, name, msgspec.Raw(b'{"content":"hi \\"there\\"","n":%d}' % seq))


async def test_jsonl_writes_shard_seq_t_and_the_raw_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv("SHARDMGR_JSONL", str(path))
    sink = handlers.JsonlSink()
    await sink.start()
    await sink.handle_batch([event(1), event(2, "TYPING_START")])
    await sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"shard": 2, "seq": 1, "t": "MESSAGE_CREATE", "d": {"content": 'hi "there"', "n": 1}},
        {"shard": 2, "seq": 2, "t": "TYPING_START", "d": {"content": 'hi "there"', "n": 2}},
    ]


def test_builtin_handlers_load_by_path() -> None:
    for name in ("log", "null", "jsonl"):
        load_handler(f"shardmgr.handlers:{name}")


async def test_log_and_null_accept_events() -> None:
    await handlers.log(event(1))
    await handlers.null(event(1))


WRITER = """
import asyncio, sys
import msgspec
from shardmgr.handlers import JsonlSink
from workers.events import Event

async def main() -> None:
    sink = JsonlSink(sys.argv[1])
    shard = int(sys.argv[2])
    body = msgspec.Raw(b'{"pad":"' + b"x" * 3000 + b'"}')
    for i in range(0, 400, 4):
        await sink.handle_batch([Event(shard, s, "E", body) for s in range(i, i + 4)])
    await sink.close()

asyncio.run(main())
"""


async def test_jsonl_lines_never_interleave_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(path), str(n))
        for n in range(4)
    ]
    async with asyncio.timeout(30):
        codes = [await p.wait() for p in procs]
    assert codes == [0, 0, 0, 0]
    seen: dict[int, list[int]] = {n: [] for n in range(4)}
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        seen[doc["shard"]].append(doc["seq"])
    assert all(seqs == list(range(400)) for seqs in seen.values())

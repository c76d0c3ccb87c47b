"""Events, URLs and read-back for the redis-stream sink tests."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec

from tests.multihost.redis_server import RedisServer
from workers.events import Event


def sink_url(server: RedisServer, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"stream": "events", **params}.items())
    return f"redis-stream://127.0.0.1:{server.port}/0?{query}"


def body(shard: int, seq: int) -> bytes:
    # raw gateway bytes: unusual spacing and non-ASCII must survive unchanged
    return b'{"content": "caf\\u00e9 \xc3\xa9", "shard":%d, "n" :%d}' % (shard, seq)


def events_for(shard: int, first: int, count: int, session: str = "s1") -> list[Event]:
    return [
        Event(shard, seq, "MESSAGE_CREATE", msgspec.Raw(body(shard, seq)), session_id=session)
        for seq in range(first, first + count)
    ]


Entries = dict[int, list[tuple[int, bytes, bytes]]]


async def read_back(client: Any, stream: str = "events") -> Entries:
    """Per shard: (seq, t, d) in stream order."""
    per_shard: Entries = defaultdict(list)
    for _, data in await client.xrange(stream):
        per_shard[int(data[b"shard"])].append((int(data[b"seq"]), data[b"t"], data[b"d"]))
    return per_shard

"""A handler for end-to-end tests and benchmarks that need *when* each event reached it and
from which shard set: appends ``{"shard", "of", "seq", "t", "guild", "at"}`` lines (``of``: the
worker's shard count, ``guild``: the event's guild id or null, ``at``: wall time) to
``$SHARDMGR_JSONL``, one ``os.write`` per event (O_APPEND keeps the lines of several workers
whole)."""

from __future__ import annotations

import json
import os
import time

import msgspec

from workers import gateway
from workers.events import Event


class _GuildOf(msgspec.Struct):
    guild_id: str | None = None


_guild_of = msgspec.json.Decoder(_GuildOf).decode
_fd: int | None = None


async def handler(event: Event) -> None:
    global _fd
    if _fd is None:
        _fd = os.open(os.environ["SHARDMGR_JSONL"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    line = {
        "shard": event.shard_id,
        "of": gateway.current().num_shards,
        "seq": event.seq,
        "t": event.name,
        "guild": _guild(event),
        "at": time.time(),
    }
    os.write(_fd, json.dumps(line).encode() + b"\n")


def _guild(event: Event) -> str | None:
    try:
        return _guild_of(event.raw).guild_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None

"""A handler that chokes on one chosen event: ``POISON_AT=SHARD:SEQ`` and ``POISON_MODE``
``hang`` (a blocking ``time.sleep``) or ``exit`` (``os._exit``). Every other event is
appended to ``$SHARDMGR_JSONL`` as ``{"shard", "seq", "t"}``. Once the file that
``POISON_FIXED`` names exists (the bug is fixed), the poison event is appended too, marked
``"replayed": true``."""

from __future__ import annotations

import json
import os
import time

from workers.events import Event


class Poisoned:
    def __init__(self) -> None:
        shard, _, seq = os.environ.get("POISON_AT", "-1:-1").partition(":")
        self.at = (int(shard), int(seq))
        self.mode = os.environ.get("POISON_MODE", "exit")
        self.path = os.environ.get("SHARDMGR_JSONL", "events.jsonl")

    async def __call__(self, event: Event) -> None:
        line = {"shard": event.shard_id, "seq": event.seq, "t": event.name}
        if (event.shard_id, event.seq) == self.at:
            if _fixed():
                _append(self.path, {**line, "replayed": True})
                return
            if self.mode == "hang":
                time.sleep(3600)  # noqa: ASYNC251 - the blocking handler under test
            os._exit(7)
        _append(self.path, line)


def _fixed() -> bool:
    flag = os.environ.get("POISON_FIXED")
    return bool(flag) and os.path.exists(str(flag))


def _append(path: str, line: dict[str, object]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, json.dumps(line).encode() + b"\n")
    finally:
        os.close(fd)


poisoned = Poisoned()

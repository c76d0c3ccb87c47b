"""The bot a chaos run deploys (``chaos_bot:handler`` in its app dir re-exports ``handler``):
the ``jsonl`` handler, with one bug planted on purpose. A MESSAGE_CREATE whose content is a
poison marker (``poisoncheck.make_marker``) takes its worker down: the bot appends a
sighting ``{"shard", "seq", "t", "poison": MARKER}`` to the events file, then exits
(``crash``) or blocks its event loop past the supervisor's ping timeout (``hang``). None of
the batch is written: the worker dies before acknowledging it, as a real bug would."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Final

from shardmgr.handlers import JsonlSink
from tests.chaos.poisoncheck import PREFIX, reason_of
from workers.events import Event

_PREFIX_BYTES: Final = PREFIX.encode()
HANG_S: Final = 3600.0  # far past any ping timeout: the supervisor kills the worker first


def poison_reason(event: Event) -> str | None:
    """How the bot dies on this event, or None: it is an ordinary event."""
    if event.name != "MESSAGE_CREATE" or _PREFIX_BYTES not in event.raw:
        return None
    try:
        d = json.loads(event.raw)
    except ValueError:
        return None
    return reason_of(d.get("content")) if isinstance(d, dict) else None


class ChaosBot(JsonlSink):
    async def handle_batch(self, events: Sequence[Event]) -> None:
        for event in events:
            reason = poison_reason(event)
            if reason is not None:
                self._choke(event, reason)
        await super().handle_batch(events)

    def _choke(self, event: Event, reason: str) -> None:
        line = {
            "shard": event.shard_id,
            "seq": event.seq,
            "t": event.name,
            "poison": json.loads(event.raw)["content"],
        }
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, json.dumps(line).encode() + b"\n")
        finally:
            os.close(fd)
        if reason == "hang":
            time.sleep(HANG_S)  # blocking on purpose: the bug this bot plants
        os._exit(1)


handler = ChaosBot()

"""Handler shapes used by the loader tests (imported by path)."""

from __future__ import annotations

from collections.abc import Sequence

from workers.events import Event

seen: list[str] = []


async def function_handler(event: Event) -> None:
    seen.append(event.name)


def sync_function(event: Event) -> None:
    seen.append(event.name)


class Methods:
    async def on_message_create(self, event: Event) -> None:
        seen.append("method:" + event.name)


methods = Methods()


class Batching:
    def __init__(self) -> None:
        self.batches: list[list[int | None]] = []

    async def handle_batch(self, events: Sequence[Event]) -> None:
        self.batches.append([e.seq for e in events])


class SyncMethod:
    def on_ready(self, event: Event) -> None:
        pass


nothing = 42

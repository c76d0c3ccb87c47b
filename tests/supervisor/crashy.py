"""A handler that kills its worker process as soon as it starts (a crash loop on demand)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from workers.events import Event


class ExitOnStart:
    async def start(self) -> None:
        os._exit(3)

    async def handle_batch(self, events: Sequence[Event]) -> None:
        return None


crash = ExitOnStart()

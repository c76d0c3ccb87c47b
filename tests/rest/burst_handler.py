"""A handler for the process test: at start, every worker sends PER_CHANNEL messages into
each channel of $SHARDMGR_JSONL's sibling file ``burst.json`` at once, tagged with its
first shard, then writes ``done-<tag>`` next to it. With ``"wait_for_go": true`` in the plan
it starts only once a file ``go`` is there: the test sees every host connected first, so that
the bursts of several supervisors surely overlap."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import msgspec

GO_POLLS = 1200  # a minute


class Bot:
    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def start(self, gateway: Any) -> None:
        folder = Path(os.environ["SHARDMGR_JSONL"]).parent
        plan = msgspec.json.decode((folder / "burst.json").read_bytes())

        async def send(tag: str, channel: str, i: int) -> None:
            await gateway.rest.request(
                "POST",
                "/channels/{channel_id}/messages",
                channel_id=channel,
                json={"content": f"{tag}:{i}"},
            )

        async def burst() -> None:
            # the worker's shards are in place once start() has returned
            tag = str(gateway.shard_ids[0])
            outcome = "ok"
            for _ in range(GO_POLLS):  # bounded: a test that never says go fails, not hangs
                if not plan.get("wait_for_go") or (folder / "go").exists():
                    break
                await asyncio.sleep(0.05)
            try:
                await asyncio.gather(
                    *(send(tag, c, i) for i in range(plan["per_channel"]) for c in plan["channels"])
                )
            except Exception as exc:
                outcome = repr(exc)
            (folder / f"done-{tag}").write_text(outcome)

        self._task = asyncio.get_running_loop().create_task(burst())

    async def on_ready(self, event: Any) -> None:
        return None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

"""Poison events in a chaos run: one marked message to a guild of the fault's shard, through
the fake's ``POST /_fake/dispatch``, which the chaos bot (``tests/chaos/bot.py``) chokes on.

The run's schedule stands still until the supervisor has dealt with it (the marker is in
the dead-letter file): two deaths of the same event are the rule under test, and a kill or
a server-side invalidation in between would be a different story, judged elsewhere."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from shardmgr import deadletters
from tests.chaos.poisoncheck import DeadLetterRec, InjectedPoison, make_marker, parse_dead_letters
from tests.chaos.schedule import Fault

if TYPE_CHECKING:
    from tests.chaos.harness import Control

# Two hangs cost two ping timeouts and two restarts; a loaded machine is slower still.
DEALT_TIMEOUT_S: Final = 60.0
ATTEMPTS: Final = 10
RETRY_S: Final = 0.3
DISCORD_EPOCH_MS: Final = 1_420_070_400_000


def read_dead_letters(state_dir: Path) -> list[DeadLetterRec]:
    try:
        text = deadletters.path_in(state_dir).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return parse_dead_letters(text.splitlines())


def message(guild_id: str, n: int, content: str) -> dict[str, Any]:
    """A user's message as the gateway sends it (the fields a bot reads)."""
    snowflake = str((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22 | n)
    return {
        "id": snowflake,
        "type": 0,
        "guild_id": guild_id,
        "channel_id": guild_id,
        "content": content,
        "author": {"id": "100000000000000042", "username": "chaos", "discriminator": "0"},
        "timestamp": "2026-01-01T00:00:00+00:00",
        "tts": False,
        "mentions": [],
        "attachments": [],
        "embeds": [],
    }


async def inject(
    fault: Fault, ctl: Control, n: int, shards: int, state_dir: Path
) -> tuple[InjectedPoison | None, str]:
    """Send the ``n``th poison and wait until it is dead-lettered: (what was sent, a note)."""
    from tests.chaos.harness import wait_for

    reason = "hang" if fault.hang else "crash"
    marker = make_marker(n, reason)
    guilds = await ctl.fake_get(f"/_fake/guilds?num_shards={shards}&shard_id={fault.shard_id}")
    if not guilds:
        return None, f"no guild on shard {fault.shard_id}"
    body = {"t": "MESSAGE_CREATE", "d": message(str(guilds[0]), n, marker)}
    for _ in range(ATTEMPTS):
        status, doc = await ctl.fake_post("/_fake/dispatch", body)
        if status >= 400 or not isinstance(doc, dict):
            return None, f"dispatch -> {status}"
        if doc.get("sessions"):
            break
        await asyncio.sleep(RETRY_S)  # the shard is between sessions: no one to send it to
    else:
        return None, f"shard {fault.shard_id} had no session"
    shot = InjectedPoison(marker, int(doc["shard_id"]), reason)

    async def dealt() -> bool:
        return any(x.marker == marker for x in read_dead_letters(state_dir))

    if await wait_for("dead-lettered", dealt, DEALT_TIMEOUT_S):
        return shot, f"{marker} dead-lettered"
    return shot, f"{marker} NOT dead-lettered within {DEALT_TIMEOUT_S:.0f} s"

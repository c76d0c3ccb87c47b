"""A handler for the bad-input process test. ``!errors`` in a channel makes REST calls that
Discord (here the fake) refuses, and writes what each raised to ``errors.json`` next to
$SHARDMGR_JSONL; then it lets one more error escape, as a careless handler would. Any other
message writes ``alive-<message id>``: the worker still handles events."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from workers.rest.errors import HTTPError

TOO_LONG = "x" * 2001  # Discord's limit is 2,000 characters


class Bot:
    def __init__(self) -> None:
        self.gateway: Any = None
        self.folder = Path(os.environ["SHARDMGR_JSONL"]).parent

    async def start(self, gateway: Any) -> None:
        self.gateway = gateway

    async def on_message_create(self, event: Any) -> None:
        message = event.data()
        if message.get("author", {}).get("bot"):
            return
        if message.get("content") != "!errors":
            (self.folder / f"alive-{message['id']}").write_text("ok")
            return
        rest = self.gateway.rest
        channel, guild = message["channel_id"], message["guild_id"]
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "malformed": lambda: rest.send_message(channel, TOO_LONG),
            "unknown_route": lambda: rest.request("GET", "/no/such/route"),
            # the test has armed one 401 for this channel and one 403 for this guild
            "unauthorized": lambda: rest.fetch_channel(channel),
            "forbidden": lambda: rest.fetch_guild(guild),
        }
        outcomes: dict[str, dict[str, Any]] = {}
        for case, call in calls.items():
            try:
                await call()
                outcomes[case] = {"type": "none"}
            except HTTPError as exc:
                outcomes[case] = {
                    "type": type(exc).__name__,
                    "status": exc.status,
                    "code": exc.code,
                    "text": str(exc),
                }
        # renamed into place: the test never reads half a file
        (self.folder / "errors.tmp").write_bytes(msgspec.json.encode(outcomes))
        (self.folder / "errors.tmp").rename(self.folder / "errors.json")
        await rest.request("GET", "/no/such/route")  # uncaught: the worker must survive it

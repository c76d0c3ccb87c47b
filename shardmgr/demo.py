"""``make run``: a local fake gateway with live traffic, and ``shardmgr start --shards auto
--handler examples.pingpong:Bot`` against it, until Ctrl-C stops both. Once every shard is
connected (and ``/ping`` registered) it prints ready-to-paste ``curl`` lines that make a user
of the fake say ``!ping`` or use ``/ping``, and where to see the bot's answers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shlex
import socket
import tempfile
from pathlib import Path
from typing import Any, Final

import aiohttp

from fakegateway import FakeConfig, FakeProcess, FakeStartError, spawn_async
from shardmgr.config import load_settings, parse_http_address
from shardmgr.errors import UserError
from workers import logsetup, redact

MAX_CONCURRENCY = 4
IDENTIFY_WINDOW_S = 2.0
HEARTBEAT_INTERVAL_S = 5.0
EVENT_RATE = 50.0
HANDLER: Final = "examples.pingpong:Bot"
# The example reads "!ping", which reaches a bot only with MESSAGE_CONTENT, as on Discord.
INTENTS: Final = "default,MESSAGE_CONTENT"
# examples/ sits next to shardmgr/ in the checkout: the demo finds it from any directory.
REPO_ROOT: Final = Path(__file__).resolve().parent.parent
COMMANDS_ROUTE: Final = "PUT /applications/{application_id}/commands"
READY_POLL_S: Final = 0.2
READY_TIMEOUT_S: Final = 120.0


def demo_token() -> str:
    """A token of Discord's shape (base64 of a snowflake . timestamp . hmac) that only the
    local fake gateway accepts."""
    bot_id = str(1_100_000_000_000_000_000 + secrets.randbelow(10**17)).encode()
    head = base64.urlsafe_b64encode(bot_id).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(5)}.{secrets.token_urlsafe(27)}"


async def _start_fake(shards: int, token: str) -> FakeProcess:
    config = FakeConfig(
        shards=shards,
        max_concurrency=MAX_CONCURRENCY,
        identify_window_s=IDENTIFY_WINDOW_S,
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
        event_rate=EVENT_RATE,
        token=token,
    )
    try:
        # Its own session: Ctrl-C goes to the demo only; the demo then stops the fake in
        # order (a cancelled start stops it too).
        return await spawn_async(config)
    except FakeStartError as exc:
        raise UserError(f"the fake gateway did not start ({exc}; see its messages above)") from None


def _free_or_any(http: str) -> str:
    """The demo should start even when 9191 is taken (say, by a real supervisor)."""
    host, port = parse_http_address(http)
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return f"{host}:0"
    return http


async def _get(http: aiohttp.ClientSession, url: str, **headers: str) -> Any:
    async with http.get(url, headers=headers) as resp:
        resp.raise_for_status()
        return await resp.json()


async def _wait_ready(http: aiohttp.ClientSession, url: str, shards: int) -> None:
    """Every shard's session is active and the bot has registered ``/ping``."""
    for _ in range(int(READY_TIMEOUT_S / READY_POLL_S)):
        stats = await _get(http, url + "/_fake/stats")
        rest = await _get(http, url + "/_fake/rest")
        if stats["sessions_active"] >= shards and rest["by_route"].get(COMMANDS_ROUTE):
            return
        await asyncio.sleep(READY_POLL_S)
    raise TimeoutError


def instructions(url: str, channel_id: str) -> str:
    """What to paste: a user says ``!ping`` / uses ``/ping`` in the channel, then the
    channel's messages and the interactions show the bot's answers."""

    def say(body: dict[str, str]) -> str:
        return (
            f"curl -s -X POST {url}/_fake/dispatch -H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps(body))}"
        )

    ping = {"t": "MESSAGE_CREATE", "content": "!ping", "channel_id": channel_id}
    slash = {"t": "INTERACTION_CREATE", "command": "ping", "channel_id": channel_id}
    messages = shlex.quote(f"{url}/_fake/messages?channel_id={channel_id}")
    return "\n".join(
        [
            "every shard is connected. Make a user of the fake say !ping:",
            f"  {say(ping)}",
            'and see the bot\'s reply ("pong", its message_reference the !ping):',
            f"  curl -s {messages}",
            "or use the /ping slash command, and see its callback:",
            f"  {say(slash)}",
            f"  curl -s {url}/_fake/interactions",
        ]
    )


async def _announce(url: str, shards: int, token: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        try:
            await _wait_ready(http, url, shards)
            guild = (await _get(http, f"{url}/_fake/guilds?num_shards={shards}&shard_id=0"))[0]
            guild_doc = await _get(
                http, f"{url}/api/v10/guilds/{guild}", Authorization=f"Bot {token}"
            )
        except (aiohttp.ClientError, TimeoutError, IndexError):
            print("not every shard connected in time: see the log above", flush=True)
            return
    print(instructions(url, guild_doc["system_channel_id"]), flush=True)


async def _demo(shards: int, http: str) -> int:
    from shardmgr.start import run_supervisor

    http = _free_or_any(http)

    token = demo_token()
    redact.add_secret(token)
    fake = await _start_fake(shards, token)
    url = fake.url
    print(f"fake gateway: {url} (ground truth at {url}/_fake/stats)", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="shardmgr-demo-") as state_dir:
            settings = load_settings(
                {
                    "shards": "auto",
                    "handler": HANDLER,
                    "intents": INTENTS,
                    "app_dir": str(REPO_ROOT),
                    "api_base": url + "/api/v10",
                    "http": http,
                    "identify_window_s": IDENTIFY_WINDOW_S,
                    "state_dir": state_dir,
                },
                env={k: v for k, v in os.environ.items() if k == "SHARDMGR_LOG_LEVEL"},
            )
            logsetup.configure(settings.log_level, settings.log_json)
            print("running until Ctrl-C", flush=True)
            announce = asyncio.create_task(_announce(url, shards, token))
            try:
                return await run_supervisor(settings, token)
            finally:
                announce.cancel()
                await asyncio.gather(announce, return_exceptions=True)
    finally:
        await fake.stop_async(5.0)
        print("demo stopped", flush=True)


def main(*, shards: int = 16, http: str = "127.0.0.1:9191") -> int:
    try:
        return asyncio.run(_demo(shards, http))
    except KeyboardInterrupt:
        return 130

"""The ping-pong example bot against the Discord-shaped test server."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from examples.pingpong import PING_COMMAND, Bot
from tests.rest.conftest import MakeClient
from tests.rest.discord_server import Canned, DiscordServer
from workers.events import Event
from workers.gateway import Gateway
from workers.models import MessageCreate
from workers.rest.errors import NotFound


def event(name: str, d: dict[str, object], shard_id: int = 0) -> Event:
    return Event(shard_id, 1, name, msgspec.json.encode(d))


def message(d: dict[str, Any]) -> MessageCreate:
    """A MESSAGE_CREATE as the bot's typed handler gets it, from the fields a test cares
    about plus what Discord always sends."""
    full = {
        "timestamp": "2026-01-01T00:00:00+00:00", "edited_timestamp": None, "tts": False,
        "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [], "pinned": False, "type": 0, **d,
        "author": {"username": "someone", "discriminator": "0", "avatar": None, **d["author"]},
    }  # fmt: skip
    model = event("MESSAGE_CREATE", full).model()
    assert isinstance(model, MessageCreate)
    return model


async def started(make_client: MakeClient) -> Bot:
    bot = Bot()
    await bot.start(Gateway({}, 1, rest=await make_client()))
    return bot


async def test_ping_gets_a_pong_reply(discord: DiscordServer, make_client: MakeClient) -> None:
    bot = await started(make_client)
    d = {"id": "11", "channel_id": "5", "guild_id": "3", "content": "!ping", "author": {"id": "7"}}
    await bot.on_message_create(message(d))
    (reply,) = discord.messages["5"]
    assert reply["content"] == "pong"
    assert reply["message_reference"]["message_id"] == "11"


async def test_other_messages_and_bots_get_nothing(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    bot = await started(make_client)
    for d in (
        {"id": "1", "channel_id": "5", "content": "hello", "author": {"id": "7"}},
        {"id": "2", "channel_id": "5", "content": "!ping", "author": {"id": "8", "bot": True}},
    ):
        await bot.on_message_create(message(d))
    assert discord.counters["requests"] == 0


async def test_slash_ping_is_answered_through_the_callback(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    bot = await started(make_client)
    d = {"id": "99", "token": "tok", "type": 2, "data": {"name": "ping"}}
    await bot.on_interaction_create(event("INTERACTION_CREATE", d))
    assert discord.seen_requests[-1] == ("POST", "/interactions/99/tok/callback")
    assert msgspec.json.decode(discord.seen_bodies[-1]) == {"type": 4, "data": {"content": "pong"}}


async def test_shard_zero_registers_ping_once(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    bot = await started(make_client)
    discord.script["PUT /applications/42/commands"].append(Canned(200, b"[]"))
    ready = {"application": {"id": "42"}}
    await bot.on_ready(event("READY", ready, shard_id=1))
    await bot.on_ready(event("READY", ready, shard_id=0))
    await bot.on_ready(event("READY", ready, shard_id=0))
    assert discord.seen_requests == [("PUT", "/applications/42/commands")]
    assert msgspec.json.decode(discord.seen_bodies[-1]) == [PING_COMMAND]


async def test_an_expired_interaction_is_dropped_but_other_refusals_raise(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    bot = await started(make_client)
    script = discord.script["POST /interactions/99/tok/callback"]
    script.append(Canned(404, b'{"message": "Unknown interaction", "code": 10062}'))
    script.append(Canned(404, b'{"message": "Unknown Webhook", "code": 10015}'))
    d = {"id": "99", "token": "tok", "type": 2, "data": {"name": "ping"}}
    await bot.on_interaction_create(event("INTERACTION_CREATE", d))
    with pytest.raises(NotFound):
        await bot.on_interaction_create(event("INTERACTION_CREATE", d))

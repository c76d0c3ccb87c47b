"""A user who says something: ``POST /_fake/dispatch`` (and ``FakeGateway.dispatch``).
A MESSAGE_CREATE from a random member (a random guild and text channel unless given), a
slash-command INTERACTION_CREATE, or any event with its whole ``d``, each sent to every
session that owns the guild. Ids are taken as strings or numbers and answered as strings."""

from __future__ import annotations

import random
from typing import Any

from fakegateway import events, fanout
from fakegateway.sessions import Session
from fakegateway.state import FakeState
from fakegateway.store import Interaction
from fakegateway.world import FakeUser, Guild, shard_for


class InjectError(ValueError):
    """A dispatch request that names something the world does not have, or is malformed."""


def _snowflake(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and value.isdigit())
    ):
        raise InjectError(f"{name} must be a snowflake (a string or number of digits)")
    return int(value)


def _place(state: FakeState, rng: random.Random, body: dict[str, Any]) -> tuple[Guild, int]:
    """The guild and text channel the event happens in."""
    world = state.world
    guild_id = _snowflake(body, "guild_id")
    channel_id = _snowflake(body, "channel_id")
    if channel_id is not None:
        guild = world.channel_guild.get(channel_id)
        if guild is None:
            raise InjectError(f"channel {channel_id} is not a guild channel of the fake")
        if guild_id is not None and guild.id != guild_id:
            raise InjectError(f"channel {channel_id} is not in guild {guild_id}")
        return guild, channel_id
    if guild_id is not None:
        guild = world.by_id.get(guild_id)
        if guild is None:
            raise InjectError(f"guild {guild_id} is not one of the fake's guilds")
    else:
        available = [g for g in world.guilds if not g.unavailable]
        if not available:
            raise InjectError("the fake has no available guild (see --guilds)")
        guild = rng.choice(available)
    return guild, rng.choice(guild.text_channels)


def _member(state: FakeState, rng: random.Random, guild: Guild) -> FakeUser:
    index = rng.randrange(max(1, min(guild.member_count - 1, len(state.world.users))))
    return guild.member_user(state.world, index)


def _answer(
    state: FakeState, guild: Guild, reached: list[Session], **ids: int | str
) -> dict[str, Any]:
    num_shards = reached[0].num_shards if reached else state.recommended_shards
    return (
        {"guild_id": str(guild.id)}
        | {k: str(v) for k, v in ids.items()}
        | {
            "shard_id": shard_for(guild.id, num_shards),
            "sessions": len(reached),
        }
    )


def message(state: FakeState, rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    content = body.get("content", "")
    if not isinstance(content, str):
        raise InjectError("content must be a string")
    guild, channel_id = _place(state, rng, body)
    author = _member(state, rng, guild)
    bot = state.bot
    mentions = [bot.payload() | {"bot": True}] if f"<@{bot.id}>" in content else []
    msg, reached = events.post_message(
        state,
        channel_id=channel_id,
        author=author,
        bot=bot,
        content=content,
        extra={"mentions": mentions} if mentions else None,
    )
    return _answer(state, guild, reached, channel_id=channel_id, message_id=msg["id"])


def interaction(state: FakeState, rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    command = body.get("command")
    if not isinstance(command, str) or not command:
        raise InjectError("command is required (the slash command's name)")
    options = body.get("options") or []
    if not isinstance(options, list):
        raise InjectError("options must be a list of option objects")
    guild, channel_id = _place(state, rng, body)
    user = _member(state, rng, guild)
    bot = state.bot
    record = Interaction(
        state.ids.next(), command, guild.id, channel_id, user.id, state.clock.monotonic()
    )
    state.interactions.add(record)
    registered = state.commands.find(command, guild.id)
    permissions = "2248473465835073"
    d = {
        "id": str(record.id),
        "application_id": str(bot.id),
        "type": 2,
        "data": {
            "id": registered["id"] if registered is not None else str(state.ids.next()),
            "name": command,
            "type": 1,
            "options": options,
        }
        | ({"guild_id": str(guild.id)} if registered and "guild_id" in registered else {}),
        "guild_id": str(guild.id),
        "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
        "channel_id": str(channel_id),
        "channel": {"id": str(channel_id), "type": 0, "guild_id": str(guild.id), "flags": 0},
        "member": state.world.member(guild, user) | {"permissions": permissions},
        "token": record.token,
        "version": 1,
        "locale": "en-US",
        "guild_locale": "en-US",
        "app_permissions": permissions,
        "entitlements": [],
        "authorizing_integration_owners": {"0": str(guild.id)},
        "context": 0,
        "attachment_size_limit": 10485760,
    }
    reached = fanout.fan_out(state, guild.id, "INTERACTION_CREATE", fanout.same_for_all(d))
    return _answer(state, guild, reached, channel_id=channel_id, interaction_id=record.id) | {
        "token": record.token
    }


def raw_event(state: FakeState, event: str, body: dict[str, Any]) -> dict[str, Any]:
    d = body.get("d")
    if not isinstance(d, dict):
        raise InjectError(f"{event} needs its whole payload as an object in d")
    guild_id = _snowflake(body, "guild_id") or _snowflake(d, "guild_id")
    guild = state.world.by_id.get(guild_id) if guild_id is not None else None
    if guild is None:
        raise InjectError("give the event's guild_id (in d or beside it), one of the fake's")
    reached = fanout.fan_out(state, guild.id, event, fanout.same_for_all(d))
    return _answer(state, guild, reached)


def dispatch(state: FakeState, rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    event = body.get("t")
    if not isinstance(event, str) or not event:
        raise InjectError("t is required (the event name, e.g. MESSAGE_CREATE)")
    if event == "MESSAGE_CREATE" and "d" not in body:
        return message(state, rng, body)
    if event == "INTERACTION_CREATE" and "d" not in body:
        return interaction(state, rng, body)
    return raw_event(state, event, body)

"""Things that happen in the fake's world, each stored and sent to the sessions that own
its guild: a message posted, edited or deleted, a reaction added or removed. The REST
routes, interaction responses and ``POST /_fake/dispatch`` all go through here, so every
message a test sees in ``GET /_fake/messages`` is one the bot was sent."""

from __future__ import annotations

from typing import Any

from fakegateway import fanout
from fakegateway.sessions import Session
from fakegateway.state import FakeState
from fakegateway.store import message_object, timestamp
from fakegateway.world import FakeUser, Guild


def channel_guild(state: FakeState, channel_id: int) -> Guild | None:
    return state.world.channel_guild.get(channel_id)


def channel_exists(state: FakeState, channel_id: int) -> bool:
    return channel_id in state.world.channel_guild or channel_id in state.world.dm_channel_ids


def post_message(
    state: FakeState,
    *,
    channel_id: int,
    author: FakeUser,
    content: str,
    bot: FakeUser,
    embeds: list[Any] | None = None,
    components: list[Any] | None = None,
    message_reference: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    author_is_bot: bool = False,
) -> tuple[dict[str, Any], list[Session]]:
    """Store a new message in ``channel_id`` and send MESSAGE_CREATE to its guild's
    sessions (``bot``: whose intents decide what they see of it)."""
    guild = channel_guild(state, channel_id)
    message = message_object(
        message_id=state.ids.next(),
        channel_id=channel_id,
        guild_id=guild.id if guild is not None else None,
        author=author.payload() | ({"bot": True} if author_is_bot else {}),
        content=content,
        embeds=embeds,
        components=components,
        message_reference=message_reference,
        extra=extra,
    )
    state.messages.add(message)
    dispatched = dict(message)
    if guild is not None:
        member = state.world.member(guild, author)
        del member["user"]
        dispatched["member"] = member
    reached = fanout.fan_out(
        state,
        guild.id if guild is not None else None,
        "MESSAGE_CREATE",
        fanout.message_body(dispatched, bot.id),
    )
    return message, reached


def update_message(
    state: FakeState, message: dict[str, Any], changes: dict[str, Any], bot: FakeUser
) -> dict[str, Any]:
    """Apply an edit and send MESSAGE_UPDATE (the whole message, as Discord now does)."""
    message.update(changes)
    message["edited_timestamp"] = state_timestamp(state)
    guild_id = message.get("guild_id")
    fanout.fan_out(
        state,
        int(guild_id) if guild_id is not None else None,
        "MESSAGE_UPDATE",
        fanout.message_body(message, bot.id),
    )
    return message


def delete_message(state: FakeState, message: dict[str, Any]) -> None:
    guild_id = message.get("guild_id")
    body: dict[str, Any] = {"id": message["id"], "channel_id": message["channel_id"]}
    if guild_id is not None:
        body["guild_id"] = guild_id
    state.messages.delete(int(message["channel_id"]), int(message["id"]))
    fanout.fan_out(
        state,
        int(guild_id) if guild_id is not None else None,
        "MESSAGE_DELETE",
        fanout.same_for_all(body),
    )


def parse_emoji(text: str) -> dict[str, Any]:
    """``👍`` or ``name:id`` (a custom emoji), as the reaction routes take them."""
    name, sep, emoji_id = text.partition(":")
    if sep and emoji_id.isdigit():
        return {"id": emoji_id, "name": name}
    return {"id": None, "name": text}


def reaction(
    state: FakeState,
    *,
    added: bool,
    channel_id: int,
    message_id: int,
    emoji: dict[str, Any],
    user: FakeUser,
) -> None:
    """Send MESSAGE_REACTION_ADD or _REMOVE for ``user`` reacting with ``emoji``."""
    guild = channel_guild(state, channel_id)
    body: dict[str, Any] = {
        "user_id": str(user.id),
        "channel_id": str(channel_id),
        "message_id": str(message_id),
        "emoji": emoji,
        "burst": False,
        "type": 0,
    }
    if guild is not None:
        body["guild_id"] = str(guild.id)
        if added:
            body["member"] = state.world.member(guild, user)
    if added:
        stored = state.messages.get(channel_id, message_id)
        if stored is not None:
            body["message_author_id"] = stored["author"]["id"]
        body["burst_colors"] = []
    fanout.fan_out(
        state,
        guild.id if guild is not None else None,
        "MESSAGE_REACTION_ADD" if added else "MESSAGE_REACTION_REMOVE",
        fanout.same_for_all(body),
    )


def state_timestamp(state: FakeState) -> str:
    """Now, as Discord writes ``edited_timestamp``."""
    return timestamp(state.ids.next())

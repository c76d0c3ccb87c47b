"""What the fake's REST side remembers: messages per channel (the bot's, users' injected
through ``/_fake/dispatch``, interaction responses), interactions with their callbacks and
followups, and application commands. Plain bounded bookkeeping; no HTTP here."""

from __future__ import annotations

import collections
import datetime
import secrets
from typing import Any, Final

from fakegateway.world import DISCORD_EPOCH_MS

MAX_MESSAGES_PER_CHANNEL: Final = 5000
MAX_MESSAGES: Final = 100_000
MAX_INTERACTIONS: Final = 10_000


def timestamp(snowflake: int) -> str:
    """The ISO 8601 time a snowflake was minted, as Discord writes message timestamps."""
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="microseconds")


def message_object(
    *,
    message_id: int,
    channel_id: int,
    guild_id: int | None,
    author: dict[str, Any],
    content: str,
    embeds: list[Any] | None = None,
    components: list[Any] | None = None,
    message_reference: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Discord message object with every field libraries read."""
    body: dict[str, Any] = {
        "id": str(message_id),
        "channel_id": str(channel_id),
        "type": 19 if message_reference is not None else 0,
        "author": author,
        "content": content,
        "timestamp": timestamp(message_id),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": embeds or [],
        "components": components or [],
        "pinned": False,
        "flags": 0,
    }
    if guild_id is not None:
        body["guild_id"] = str(guild_id)
    if message_reference is not None:
        body["message_reference"] = message_reference
    if extra:
        body |= extra
    return body


class MessageStore:
    """Messages by id, and each channel's in order; old ones fall out (bounded)."""

    def __init__(self) -> None:
        self.by_id: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
        self._channels: dict[int, collections.deque[int]] = {}

    def add(self, message: dict[str, Any]) -> None:
        message_id = int(message["id"])
        channel = int(message["channel_id"])
        ids = self._channels.setdefault(channel, collections.deque(maxlen=MAX_MESSAGES_PER_CHANNEL))
        if len(ids) == ids.maxlen:
            self.by_id.pop(ids[0], None)
        ids.append(message_id)
        self.by_id[message_id] = message
        while len(self.by_id) > MAX_MESSAGES:
            old_id, old = self.by_id.popitem(last=False)
            kept = self._channels.get(int(old["channel_id"]))
            if kept and kept[0] == old_id:
                kept.popleft()

    def get(self, channel_id: int, message_id: int) -> dict[str, Any] | None:
        message = self.by_id.get(message_id)
        if message is None or int(message["channel_id"]) != channel_id:
            return None
        return message

    def delete(self, channel_id: int, message_id: int) -> dict[str, Any] | None:
        message = self.get(channel_id, message_id)
        if message is not None:
            del self.by_id[message_id]
            ids = self._channels.get(channel_id)
            if ids is not None:
                ids.remove(message_id)
        return message

    def in_channel(self, channel_id: int | None) -> list[dict[str, Any]]:
        """A channel's messages in order (every message in order when None)."""
        if channel_id is None:
            return list(self.by_id.values())
        return [self.by_id[i] for i in self._channels.get(channel_id, ()) if i in self.by_id]


class Interaction:
    """One interaction the fake created, and what the bot did with it."""

    __slots__ = (
        "callbacks",
        "channel_id",
        "command",
        "created_mono",
        "followups",
        "guild_id",
        "id",
        "original_message_id",
        "token",
        "user_id",
    )

    def __init__(
        self,
        interaction_id: int,
        command: str,
        guild_id: int,
        channel_id: int,
        user_id: int,
        now_mono: float,
    ) -> None:
        self.id = interaction_id
        self.token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        self.command = command
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.user_id = user_id
        self.created_mono = now_mono
        self.callbacks: list[dict[str, Any]] = []
        self.followups: list[str] = []
        self.original_message_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "command": self.command,
            "guild_id": str(self.guild_id),
            "channel_id": str(self.channel_id),
            "user_id": str(self.user_id),
            "callbacks": list(self.callbacks),
            "followups": list(self.followups),
            "original_message_id": (
                None if self.original_message_id is None else str(self.original_message_id)
            ),
        }


class InteractionStore:
    def __init__(self) -> None:
        self.by_id: collections.OrderedDict[int, Interaction] = collections.OrderedDict()
        self.by_token: dict[str, Interaction] = {}

    def add(self, interaction: Interaction) -> None:
        if len(self.by_id) >= MAX_INTERACTIONS:
            _, old = self.by_id.popitem(last=False)
            self.by_token.pop(old.token, None)
        self.by_id[interaction.id] = interaction
        self.by_token[interaction.token] = interaction

    def get(self, interaction_id: int, token: str) -> Interaction | None:
        found = self.by_id.get(interaction_id)
        return found if found is not None and secrets.compare_digest(found.token, token) else None


class CommandStore:
    """Application commands: global, and per guild."""

    def __init__(self) -> None:
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.version = 0

    def commands(self, guild_id: int | None) -> list[dict[str, Any]]:
        if guild_id is None:
            return self.global_commands
        return self.guild_commands.setdefault(guild_id, [])

    def find(self, name: str, guild_id: int | None) -> dict[str, Any] | None:
        for command in [*self.commands(guild_id), *self.global_commands]:
            if command["name"] == name:
                return command
        return None

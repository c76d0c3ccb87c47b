"""The dispatch events' payloads (``d``) that are not plain objects from the other
modules, and the table from event name to model."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from msgspec import UNSET, UnsetType

from workers.models.base import Model, Snowflake
from workers.models.channels import Channel
from workers.models.guilds import Emoji, Guild, GuildCreate, UnavailableGuild, VoiceState
from workers.models.interactions import Interaction
from workers.models.messages import MessageCreate, MessageUpdate
from workers.models.users import Member, PresenceUpdate, User


class ReadyApplication(Model, kw_only=True, frozen=True):
    id: Snowflake
    flags: int | UnsetType = UNSET


class Ready(Model, kw_only=True, frozen=True):
    v: int
    user: User
    guilds: list[UnavailableGuild]
    session_id: str
    resume_gateway_url: str
    # [shard_id, num_shards]
    shard: list[int] | UnsetType = UNSET
    application: ReadyApplication | UnsetType = UNSET


class MessageDelete(Model, kw_only=True, frozen=True):
    id: Snowflake
    channel_id: Snowflake
    guild_id: Snowflake | UnsetType = UNSET


class GuildMemberAdd(Member, kw_only=True, frozen=True):
    guild_id: Snowflake
    user: User  # always there in this event


class GuildMemberUpdate(Member, kw_only=True, frozen=True):
    guild_id: Snowflake
    user: User


class GuildMemberRemove(Model, kw_only=True, frozen=True):
    guild_id: Snowflake
    user: User


class MessageReactionAdd(Model, kw_only=True, frozen=True):
    user_id: Snowflake
    channel_id: Snowflake
    message_id: Snowflake
    guild_id: Snowflake | UnsetType = UNSET
    member: Member | UnsetType = UNSET
    emoji: Emoji
    message_author_id: Snowflake | UnsetType = UNSET
    burst: bool | UnsetType = UNSET
    burst_colors: list[str] | UnsetType = UNSET
    type: int | UnsetType = UNSET


class MessageReactionRemove(Model, kw_only=True, frozen=True):
    user_id: Snowflake
    channel_id: Snowflake
    message_id: Snowflake
    guild_id: Snowflake | UnsetType = UNSET
    emoji: Emoji
    burst: bool | UnsetType = UNSET
    type: int | UnsetType = UNSET


class TypingStart(Model, kw_only=True, frozen=True):
    channel_id: Snowflake
    guild_id: Snowflake | UnsetType = UNSET
    user_id: Snowflake
    # Discord sends Unix seconds.
    timestamp: datetime
    member: Member | UnsetType = UNSET


class VoiceServerUpdate(Model, kw_only=True, frozen=True):
    token: str
    guild_id: Snowflake
    # null while the voice server is being reallocated
    endpoint: str | None


# Event name -> the model ``Event.model()`` decodes its ``d`` into. Other names have none.
EVENT_MODELS: Final[dict[str, type[Any]]] = {
    "READY": Ready,
    "MESSAGE_CREATE": MessageCreate,
    "MESSAGE_UPDATE": MessageUpdate,
    "MESSAGE_DELETE": MessageDelete,
    "INTERACTION_CREATE": Interaction,
    "GUILD_CREATE": GuildCreate,
    "GUILD_UPDATE": Guild,
    "GUILD_DELETE": UnavailableGuild,
    "GUILD_MEMBER_ADD": GuildMemberAdd,
    "GUILD_MEMBER_UPDATE": GuildMemberUpdate,
    "GUILD_MEMBER_REMOVE": GuildMemberRemove,
    "MESSAGE_REACTION_ADD": MessageReactionAdd,
    "MESSAGE_REACTION_REMOVE": MessageReactionRemove,
    "PRESENCE_UPDATE": PresenceUpdate,
    "TYPING_START": TypingStart,
    "VOICE_STATE_UPDATE": VoiceState,
    "VOICE_SERVER_UPDATE": VoiceServerUpdate,
    "CHANNEL_CREATE": Channel,
    "CHANNEL_UPDATE": Channel,
    "CHANNEL_DELETE": Channel,
    "THREAD_CREATE": Channel,
}

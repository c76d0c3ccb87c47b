"""Typed models of the dispatch events bots handle most, decoded by msgspec.

``Event.model()`` decodes an event's ``d`` into the model ``EVENT_MODELS`` names for its
type (None for other types: use ``Event.data()``), and a handler method annotated with a
model receives it directly::

    from workers.models import MessageCreate

    class Bot:
        async def on_message_create(self, message: MessageCreate) -> None:
            print(message.author.id, message.content)

Handlers import every type from here; the submodules only split the definitions by area.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec

from workers.models.base import Model, Permissions, Snowflake
from workers.models.channels import (
    Channel,
    DefaultReaction,
    ForumTag,
    Overwrite,
    ThreadMember,
    ThreadMetadata,
)
from workers.models.gateway import (
    EVENT_MODELS,
    GuildMemberAdd,
    GuildMemberRemove,
    GuildMemberUpdate,
    MessageDelete,
    MessageReactionAdd,
    MessageReactionRemove,
    Ready,
    ReadyApplication,
    TypingStart,
    VoiceServerUpdate,
)
from workers.models.guilds import (
    Emoji,
    Guild,
    GuildCreate,
    PartialEmoji,
    Role,
    RoleColors,
    RoleTags,
    UnavailableGuild,
    VoiceState,
)
from workers.models.interactions import (
    Interaction,
    InteractionData,
    InteractionGuild,
    InteractionOption,
)
from workers.models.messages import (
    Attachment,
    ChannelMention,
    Component,
    Embed,
    EmbedAuthor,
    EmbedField,
    EmbedFooter,
    EmbedMedia,
    EmbedProvider,
    Message,
    MessageCreate,
    MessageInteraction,
    MessageInteractionMetadata,
    MessageReference,
    MessageSnapshot,
    MessageUpdate,
    Reaction,
    ReactionCountDetails,
    ResolvedData,
    SelectOption,
    SnapshotMessage,
    StickerItem,
)
from workers.models.users import (
    Activity,
    ActivityAssets,
    ActivityEmoji,
    ActivityParty,
    ActivityTimestamps,
    AvatarDecorationData,
    ClientStatus,
    Member,
    MentionedUser,
    PartialUser,
    PresenceUpdate,
    User,
)

# The events whose payload is a plain object, by the event's name.
GuildUpdate = Guild
GuildDelete = UnavailableGuild
InteractionCreate = Interaction
ChannelCreate = ChannelUpdate = ChannelDelete = ThreadCreate = Channel
VoiceStateUpdate = VoiceState

# One decode function per event type, built once: ``strict=False`` turns Discord's string
# ids into ints (see ``base.Snowflake``).
MODEL_DECODERS: Final[dict[str, Callable[[bytes | msgspec.Raw], Any]]] = {
    name: msgspec.json.Decoder(model, strict=False).decode for name, model in EVENT_MODELS.items()
}
# What a model decode raises on a payload that does not fit (RecursionError: nesting).
DECODE_ERRORS: Final = (msgspec.DecodeError, RecursionError)


class ModelError(ValueError):
    """An event's payload does not fit its model (a field of another type than Discord
    documents, a required field missing)."""

    @classmethod
    def of(cls, name: str, exc: Exception) -> ModelError:
        model = EVENT_MODELS[name].__name__
        return cls(f"{name} payload does not fit workers.models.{model}: {exc}")


__all__ = [
    "DECODE_ERRORS",
    "EVENT_MODELS",
    "MODEL_DECODERS",
    "Activity",
    "ActivityAssets",
    "ActivityEmoji",
    "ActivityParty",
    "ActivityTimestamps",
    "Attachment",
    "AvatarDecorationData",
    "Channel",
    "ChannelCreate",
    "ChannelDelete",
    "ChannelMention",
    "ChannelUpdate",
    "ClientStatus",
    "Component",
    "DefaultReaction",
    "Embed",
    "EmbedAuthor",
    "EmbedField",
    "EmbedFooter",
    "EmbedMedia",
    "EmbedProvider",
    "Emoji",
    "ForumTag",
    "Guild",
    "GuildCreate",
    "GuildDelete",
    "GuildMemberAdd",
    "GuildMemberRemove",
    "GuildMemberUpdate",
    "GuildUpdate",
    "Interaction",
    "InteractionCreate",
    "InteractionData",
    "InteractionGuild",
    "InteractionOption",
    "Member",
    "MentionedUser",
    "Message",
    "MessageCreate",
    "MessageDelete",
    "MessageInteraction",
    "MessageInteractionMetadata",
    "MessageReactionAdd",
    "MessageReactionRemove",
    "MessageReference",
    "MessageSnapshot",
    "MessageUpdate",
    "Model",
    "ModelError",
    "Overwrite",
    "PartialEmoji",
    "PartialUser",
    "Permissions",
    "PresenceUpdate",
    "Reaction",
    "ReactionCountDetails",
    "Ready",
    "ReadyApplication",
    "ResolvedData",
    "Role",
    "RoleColors",
    "RoleTags",
    "SelectOption",
    "SnapshotMessage",
    "Snowflake",
    "StickerItem",
    "ThreadCreate",
    "ThreadMember",
    "ThreadMetadata",
    "TypingStart",
    "UnavailableGuild",
    "User",
    "VoiceServerUpdate",
    "VoiceState",
    "VoiceStateUpdate",
]

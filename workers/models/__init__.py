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

# One decoder per event type, built once: ``strict=False`` turns Discord's string ids into
# ints (see ``base.Snowflake``).
_DECODERS: Final = {
    name: msgspec.json.Decoder(model, strict=False) for name, model in EVENT_MODELS.items()
}


class ModelError(ValueError):
    """An event's payload does not fit its model (a field of another type than Discord
    documents, a required field missing)."""


def decode_model(name: str, body: bytes | msgspec.Raw) -> Any:
    """``body`` (an event's ``d``) as the model for event type ``name``; None when there
    is no model for that type. Raises ``ModelError`` when the payload does not fit."""
    decoder = _DECODERS.get(name)
    if decoder is None:
        return None
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        model = EVENT_MODELS[name].__name__
        raise ModelError(f"{name} payload does not fit workers.models.{model}: {exc}") from exc


__all__ = [
    "EVENT_MODELS",
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
    "decode_model",
]

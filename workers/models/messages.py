"""Messages and what they carry: embeds, attachments, reactions, components."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from msgspec import UNSET, UnsetType

from workers.models.base import Model, Snowflake
from workers.models.channels import Channel
from workers.models.guilds import Emoji, PartialEmoji, Role
from workers.models.users import Member, MentionedUser, User


class EmbedFooter(Model, kw_only=True, frozen=True):
    text: str
    icon_url: str | UnsetType = UNSET
    proxy_icon_url: str | UnsetType = UNSET


class EmbedMedia(Model, kw_only=True, frozen=True):
    """An embed's image, thumbnail or video."""

    url: str | UnsetType = UNSET
    proxy_url: str | UnsetType = UNSET
    height: int | UnsetType = UNSET
    width: int | UnsetType = UNSET


class EmbedProvider(Model, kw_only=True, frozen=True):
    name: str | UnsetType = UNSET
    url: str | UnsetType | None = UNSET


class EmbedAuthor(Model, kw_only=True, frozen=True):
    name: str
    url: str | UnsetType = UNSET
    icon_url: str | UnsetType = UNSET
    proxy_icon_url: str | UnsetType = UNSET


class EmbedField(Model, kw_only=True, frozen=True):
    name: str
    value: str
    inline: bool | UnsetType = UNSET


class Embed(Model, kw_only=True, frozen=True):
    title: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    url: str | UnsetType = UNSET
    timestamp: datetime | UnsetType = UNSET
    color: int | UnsetType = UNSET
    footer: EmbedFooter | UnsetType = UNSET
    image: EmbedMedia | UnsetType = UNSET
    thumbnail: EmbedMedia | UnsetType = UNSET
    video: EmbedMedia | UnsetType = UNSET
    provider: EmbedProvider | UnsetType = UNSET
    author: EmbedAuthor | UnsetType = UNSET
    fields: list[EmbedField] | UnsetType = UNSET


class Attachment(Model, kw_only=True, frozen=True):
    id: Snowflake
    filename: str
    title: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    content_type: str | UnsetType = UNSET
    size: int
    url: str
    proxy_url: str
    height: int | UnsetType | None = UNSET
    width: int | UnsetType | None = UNSET
    ephemeral: bool | UnsetType = UNSET
    duration_secs: float | UnsetType = UNSET
    waveform: str | UnsetType = UNSET
    flags: int | UnsetType = UNSET


class ReactionCountDetails(Model, kw_only=True, frozen=True):
    burst: int
    normal: int


class Reaction(Model, kw_only=True, frozen=True):
    count: int
    count_details: ReactionCountDetails | UnsetType = UNSET
    me: bool
    me_burst: bool | UnsetType = UNSET
    emoji: Emoji
    burst_colors: list[str] | UnsetType = UNSET


class MessageReference(Model, kw_only=True, frozen=True):
    type: int | UnsetType = UNSET
    message_id: Snowflake | UnsetType = UNSET
    channel_id: Snowflake | UnsetType = UNSET
    guild_id: Snowflake | UnsetType = UNSET
    fail_if_not_exists: bool | UnsetType = UNSET


class ChannelMention(Model, kw_only=True, frozen=True):
    id: Snowflake
    guild_id: Snowflake
    type: int
    name: str


class StickerItem(Model, kw_only=True, frozen=True):
    id: Snowflake
    name: str
    format_type: int


class SelectOption(Model, kw_only=True, frozen=True):
    label: str
    value: str
    description: str | UnsetType = UNSET
    emoji: PartialEmoji | UnsetType = UNSET
    default: bool | UnsetType = UNSET


class Component(Model, kw_only=True, frozen=True):
    """Any message or modal component: the fields common to the kinds bots handle most;
    ``type`` says which (1 action row, 2 button, 3-8 selects, 4 text input, ...)."""

    type: int
    id: int | UnsetType = UNSET
    custom_id: str | UnsetType = UNSET
    components: list[Component] | UnsetType = UNSET
    style: int | UnsetType = UNSET
    label: str | UnsetType = UNSET
    emoji: PartialEmoji | UnsetType = UNSET
    url: str | UnsetType = UNSET
    disabled: bool | UnsetType = UNSET
    placeholder: str | UnsetType = UNSET
    min_values: int | UnsetType = UNSET
    max_values: int | UnsetType = UNSET
    options: list[SelectOption] | UnsetType = UNSET
    # A text input's value in a modal submit; a select's chosen values.
    value: str | UnsetType = UNSET
    values: list[str] | UnsetType = UNSET
    content: str | UnsetType = UNSET


class MessageInteractionMetadata(Model, kw_only=True, frozen=True):
    id: Snowflake
    type: int
    user: User
    authorizing_integration_owners: dict[int, Snowflake] = {}
    original_response_message_id: Snowflake | UnsetType = UNSET
    interacted_message_id: Snowflake | UnsetType = UNSET
    target_user: User | UnsetType = UNSET
    target_message_id: Snowflake | UnsetType = UNSET
    triggering_interaction_metadata: MessageInteractionMetadata | UnsetType = UNSET


class MessageInteraction(Model, kw_only=True, frozen=True):
    """Deprecated by Discord in favour of ``interaction_metadata``; still sent."""

    id: Snowflake
    type: int
    name: str
    user: User
    member: Member | UnsetType = UNSET


class ResolvedData(Model, kw_only=True, frozen=True):
    """Users, members, roles, channels, messages and attachments an interaction or a
    message refers to, by id."""

    users: dict[Snowflake, User] | UnsetType = UNSET
    members: dict[Snowflake, Member] | UnsetType = UNSET
    roles: dict[Snowflake, Role] | UnsetType = UNSET
    channels: dict[Snowflake, Channel] | UnsetType = UNSET
    messages: dict[Snowflake, Message] | UnsetType = UNSET
    attachments: dict[Snowflake, Attachment] | UnsetType = UNSET


class SnapshotMessage(Model, kw_only=True, frozen=True):
    """The fields of a forwarded message that a snapshot keeps."""

    type: int | UnsetType = UNSET
    content: str | UnsetType = UNSET
    embeds: list[Embed] | UnsetType = UNSET
    attachments: list[Attachment] | UnsetType = UNSET
    timestamp: datetime | UnsetType = UNSET
    edited_timestamp: datetime | UnsetType | None = UNSET
    flags: int | UnsetType = UNSET
    mentions: list[User] | UnsetType = UNSET
    mention_roles: list[Snowflake] | UnsetType = UNSET


class MessageSnapshot(Model, kw_only=True, frozen=True):
    message: SnapshotMessage


class Message(Model, kw_only=True, frozen=True):
    """A message. Without the MESSAGE_CONTENT intent, ``content``, ``embeds``,
    ``attachments`` and ``components`` arrive empty."""

    id: Snowflake
    channel_id: Snowflake
    author: User
    content: str
    timestamp: datetime
    edited_timestamp: datetime | None
    tts: bool
    mention_everyone: bool
    # MESSAGE_CREATE/UPDATE send each with its partial member: see MessageCreate.
    mentions: Sequence[User]
    mention_roles: list[Snowflake]
    mention_channels: list[ChannelMention] | UnsetType = UNSET
    attachments: list[Attachment]
    embeds: list[Embed]
    reactions: list[Reaction] | UnsetType = UNSET
    nonce: int | str | UnsetType = UNSET
    pinned: bool
    webhook_id: Snowflake | UnsetType = UNSET
    type: int
    activity: Any | UnsetType = UNSET
    application: Any | UnsetType = UNSET
    application_id: Snowflake | UnsetType = UNSET
    flags: int | UnsetType = UNSET
    message_reference: MessageReference | UnsetType = UNSET
    message_snapshots: list[MessageSnapshot] | UnsetType = UNSET
    referenced_message: Message | UnsetType | None = UNSET
    interaction_metadata: MessageInteractionMetadata | UnsetType = UNSET
    interaction: MessageInteraction | UnsetType = UNSET
    thread: Channel | UnsetType = UNSET
    components: list[Component] | UnsetType = UNSET
    sticker_items: list[StickerItem] | UnsetType = UNSET
    stickers: list[Any] | UnsetType = UNSET
    position: int | UnsetType = UNSET
    role_subscription_data: Any | UnsetType = UNSET
    resolved: ResolvedData | UnsetType = UNSET
    poll: Any | UnsetType = UNSET
    call: Any | UnsetType = UNSET


class MessageCreate(Message, kw_only=True, frozen=True):
    """MESSAGE_CREATE: a message plus the gateway's extra fields."""

    guild_id: Snowflake | UnsetType = UNSET
    # The author's partial member (no ``user``), in guilds.
    member: Member | UnsetType = UNSET
    mentions: list[MentionedUser]
    channel_type: int | UnsetType = UNSET


class MessageUpdate(MessageCreate, kw_only=True, frozen=True):
    """MESSAGE_UPDATE: the whole updated message, with MESSAGE_CREATE's extra fields."""

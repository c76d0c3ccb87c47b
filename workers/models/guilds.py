"""Guilds, roles, emojis and voice states."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from msgspec import UNSET, UnsetType

from workers.models.base import Model, Permissions, Snowflake
from workers.models.channels import Channel
from workers.models.users import Member, PresenceUpdate, User


class RoleTags(Model, kw_only=True, frozen=True):
    # Discord's booleans here are null when true and absent when false: test ``is None``.
    bot_id: Snowflake | UnsetType = UNSET
    integration_id: Snowflake | UnsetType = UNSET
    premium_subscriber: UnsetType | None = UNSET
    subscription_listing_id: Snowflake | UnsetType = UNSET
    available_for_purchase: UnsetType | None = UNSET
    guild_connections: UnsetType | None = UNSET


class RoleColors(Model, kw_only=True, frozen=True):
    primary_color: int
    secondary_color: int | None = None
    tertiary_color: int | None = None


class Role(Model, kw_only=True, frozen=True):
    id: Snowflake
    name: str
    color: int
    colors: RoleColors | UnsetType = UNSET
    hoist: bool
    icon: str | UnsetType | None = UNSET
    unicode_emoji: str | UnsetType | None = UNSET
    position: int
    permissions: Permissions
    managed: bool
    mentionable: bool
    tags: RoleTags | UnsetType = UNSET
    flags: int | UnsetType = UNSET


class Emoji(Model, kw_only=True, frozen=True):
    """A guild's custom emoji, or a reaction's emoji (``id`` null for a Unicode one)."""

    id: Snowflake | None
    name: str | None
    roles: list[Snowflake] | UnsetType = UNSET
    user: User | UnsetType = UNSET
    require_colons: bool | UnsetType = UNSET
    managed: bool | UnsetType = UNSET
    animated: bool | UnsetType = UNSET
    available: bool | UnsetType = UNSET


class PartialEmoji(Model, kw_only=True, frozen=True):
    """An emoji on a component or select option: any field may be left out."""

    id: Snowflake | UnsetType | None = UNSET
    name: str | UnsetType | None = UNSET
    animated: bool | UnsetType = UNSET


class VoiceState(Model, kw_only=True, frozen=True):
    """VOICE_STATE_UPDATE, and each of GUILD_CREATE's ``voice_states`` (no ``guild_id``)."""

    guild_id: Snowflake | UnsetType = UNSET
    channel_id: Snowflake | None
    user_id: Snowflake
    member: Member | UnsetType = UNSET
    session_id: str
    deaf: bool
    mute: bool
    self_deaf: bool
    self_mute: bool
    self_stream: bool | UnsetType = UNSET
    self_video: bool
    suppress: bool
    request_to_speak_timestamp: datetime | None = None


class UnavailableGuild(Model, kw_only=True, frozen=True):
    """READY's guilds, and GUILD_DELETE (``unavailable`` absent: the bot was removed)."""

    id: Snowflake
    unavailable: bool | UnsetType = UNSET


class Guild(Model, kw_only=True, frozen=True):
    """GUILD_UPDATE. Every field but ``id`` may be absent: the same shape carries an
    unavailable guild in GUILD_CREATE."""

    id: Snowflake
    name: str | UnsetType = UNSET
    icon: str | UnsetType | None = UNSET
    icon_hash: str | UnsetType | None = UNSET
    splash: str | UnsetType | None = UNSET
    discovery_splash: str | UnsetType | None = UNSET
    owner: bool | UnsetType = UNSET
    owner_id: Snowflake | UnsetType = UNSET
    permissions: Permissions | UnsetType = UNSET
    region: str | UnsetType | None = UNSET
    afk_channel_id: Snowflake | UnsetType | None = UNSET
    afk_timeout: int | UnsetType = UNSET
    widget_enabled: bool | UnsetType = UNSET
    widget_channel_id: Snowflake | UnsetType | None = UNSET
    verification_level: int | UnsetType = UNSET
    default_message_notifications: int | UnsetType = UNSET
    explicit_content_filter: int | UnsetType = UNSET
    roles: list[Role] | UnsetType = UNSET
    emojis: list[Emoji] | UnsetType = UNSET
    features: list[str] | UnsetType = UNSET
    mfa_level: int | UnsetType = UNSET
    application_id: Snowflake | UnsetType | None = UNSET
    system_channel_id: Snowflake | UnsetType | None = UNSET
    system_channel_flags: int | UnsetType = UNSET
    rules_channel_id: Snowflake | UnsetType | None = UNSET
    max_presences: int | UnsetType | None = UNSET
    max_members: int | UnsetType = UNSET
    vanity_url_code: str | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET
    banner: str | UnsetType | None = UNSET
    premium_tier: int | UnsetType = UNSET
    premium_subscription_count: int | UnsetType = UNSET
    preferred_locale: str | UnsetType = UNSET
    public_updates_channel_id: Snowflake | UnsetType | None = UNSET
    max_video_channel_users: int | UnsetType = UNSET
    max_stage_video_channel_users: int | UnsetType = UNSET
    approximate_member_count: int | UnsetType = UNSET
    approximate_presence_count: int | UnsetType = UNSET
    nsfw_level: int | UnsetType = UNSET
    stickers: list[Any] | UnsetType = UNSET
    premium_progress_bar_enabled: bool | UnsetType = UNSET
    safety_alerts_channel_id: Snowflake | UnsetType | None = UNSET
    unavailable: bool | UnsetType = UNSET


class GuildCreate(Guild, kw_only=True, frozen=True):
    """GUILD_CREATE: a guild with the fields only this event carries, or an unavailable
    guild (``unavailable`` true, nothing else but ``id``)."""

    joined_at: datetime | UnsetType = UNSET
    large: bool | UnsetType = UNSET
    member_count: int | UnsetType = UNSET
    voice_states: list[VoiceState] | UnsetType = UNSET
    members: list[Member] | UnsetType = UNSET
    channels: list[Channel] | UnsetType = UNSET
    threads: list[Channel] | UnsetType = UNSET
    presences: list[PresenceUpdate] | UnsetType = UNSET
    stage_instances: list[Any] | UnsetType = UNSET
    guild_scheduled_events: list[Any] | UnsetType = UNSET
    soundboard_sounds: list[Any] | UnsetType = UNSET

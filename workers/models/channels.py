"""Channels and threads."""

from __future__ import annotations

from datetime import datetime

from msgspec import UNSET, UnsetType

from workers.models.base import Model, Permissions, Snowflake
from workers.models.users import Member, User


class Overwrite(Model, kw_only=True, frozen=True):
    id: Snowflake
    type: int
    allow: Permissions
    deny: Permissions


class ThreadMetadata(Model, kw_only=True, frozen=True):
    archived: bool
    auto_archive_duration: int
    archive_timestamp: datetime
    locked: bool
    invitable: bool | UnsetType = UNSET
    create_timestamp: datetime | UnsetType | None = UNSET


class ThreadMember(Model, kw_only=True, frozen=True):
    id: Snowflake | UnsetType = UNSET
    user_id: Snowflake | UnsetType = UNSET
    join_timestamp: datetime
    flags: int
    member: Member | UnsetType = UNSET


class ForumTag(Model, kw_only=True, frozen=True):
    id: Snowflake
    name: str
    moderated: bool
    emoji_id: Snowflake | None = None
    emoji_name: str | None = None


class DefaultReaction(Model, kw_only=True, frozen=True):
    emoji_id: Snowflake | None = None
    emoji_name: str | None = None


class Channel(Model, kw_only=True, frozen=True):
    """A channel or thread (CHANNEL_CREATE/UPDATE/DELETE, THREAD_CREATE, GUILD_CREATE's
    ``channels`` and ``threads``). Only ``id`` and ``type`` are always there."""

    id: Snowflake
    type: int
    guild_id: Snowflake | UnsetType = UNSET
    position: int | UnsetType = UNSET
    permission_overwrites: list[Overwrite] | UnsetType = UNSET
    name: str | UnsetType | None = UNSET
    topic: str | UnsetType | None = UNSET
    nsfw: bool | UnsetType = UNSET
    last_message_id: Snowflake | UnsetType | None = UNSET
    bitrate: int | UnsetType = UNSET
    user_limit: int | UnsetType = UNSET
    rate_limit_per_user: int | UnsetType = UNSET
    recipients: list[User] | UnsetType = UNSET
    icon: str | UnsetType | None = UNSET
    owner_id: Snowflake | UnsetType = UNSET
    application_id: Snowflake | UnsetType = UNSET
    managed: bool | UnsetType = UNSET
    parent_id: Snowflake | UnsetType | None = UNSET
    last_pin_timestamp: datetime | UnsetType | None = UNSET
    rtc_region: str | UnsetType | None = UNSET
    video_quality_mode: int | UnsetType = UNSET
    message_count: int | UnsetType = UNSET
    member_count: int | UnsetType = UNSET
    thread_metadata: ThreadMetadata | UnsetType = UNSET
    member: ThreadMember | UnsetType = UNSET
    default_auto_archive_duration: int | UnsetType = UNSET
    permissions: Permissions | UnsetType = UNSET
    flags: int | UnsetType = UNSET
    total_message_sent: int | UnsetType = UNSET
    available_tags: list[ForumTag] | UnsetType = UNSET
    applied_tags: list[Snowflake] | UnsetType = UNSET
    default_reaction_emoji: DefaultReaction | UnsetType | None = UNSET
    default_thread_rate_limit_per_user: int | UnsetType = UNSET
    default_sort_order: int | UnsetType | None = UNSET
    default_forum_layout: int | UnsetType = UNSET
    # THREAD_CREATE only: true when the thread was just created (not when the bot was
    # added to an existing private thread).
    newly_created: bool | UnsetType = UNSET

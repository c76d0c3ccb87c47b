"""Users, guild members and presences."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from msgspec import UNSET, UnsetType

from workers.models.base import Model, Permissions, Snowflake


class AvatarDecorationData(Model, kw_only=True, frozen=True):
    asset: str
    sku_id: Snowflake | UnsetType = UNSET


class User(Model, kw_only=True, frozen=True):
    id: Snowflake
    username: str
    discriminator: str | UnsetType = UNSET
    global_name: str | UnsetType | None = UNSET
    avatar: str | UnsetType | None = UNSET
    bot: bool | UnsetType = UNSET
    system: bool | UnsetType = UNSET
    mfa_enabled: bool | UnsetType = UNSET
    banner: str | UnsetType | None = UNSET
    accent_color: int | UnsetType | None = UNSET
    locale: str | UnsetType = UNSET
    verified: bool | UnsetType = UNSET
    email: str | UnsetType | None = UNSET
    flags: int | UnsetType = UNSET
    premium_type: int | UnsetType = UNSET
    public_flags: int | UnsetType = UNSET
    avatar_decoration_data: AvatarDecorationData | UnsetType | None = UNSET


class PartialUser(Model, kw_only=True, frozen=True):
    """A presence's user: only ``id`` is guaranteed."""

    id: Snowflake
    username: str | UnsetType = UNSET
    discriminator: str | UnsetType = UNSET
    global_name: str | UnsetType | None = UNSET
    avatar: str | UnsetType | None = UNSET
    bot: bool | UnsetType = UNSET


class Member(Model, kw_only=True, frozen=True):
    """A guild member. ``user`` is absent where the event carries the user beside it
    (MESSAGE_CREATE's ``member``, an interaction's resolved members)."""

    user: User | UnsetType = UNSET
    nick: str | UnsetType | None = UNSET
    avatar: str | UnsetType | None = UNSET
    banner: str | UnsetType | None = UNSET
    roles: list[Snowflake]
    joined_at: datetime | None
    premium_since: datetime | UnsetType | None = UNSET
    deaf: bool | UnsetType = UNSET
    mute: bool | UnsetType = UNSET
    flags: int | UnsetType = UNSET
    pending: bool | UnsetType = UNSET
    permissions: Permissions | UnsetType = UNSET
    communication_disabled_until: datetime | UnsetType | None = UNSET
    avatar_decoration_data: AvatarDecorationData | UnsetType | None = UNSET


class MentionedUser(User, kw_only=True, frozen=True):
    """A user mentioned in a gateway message, with their partial member in a guild."""

    member: Member | UnsetType = UNSET


class ActivityTimestamps(Model, kw_only=True, frozen=True):
    # Unix milliseconds, as Discord sends them.
    start: int | UnsetType = UNSET
    end: int | UnsetType = UNSET


class ActivityEmoji(Model, kw_only=True, frozen=True):
    name: str
    id: Snowflake | UnsetType = UNSET
    animated: bool | UnsetType = UNSET


class ActivityParty(Model, kw_only=True, frozen=True):
    id: str | UnsetType = UNSET
    size: list[int] | UnsetType = UNSET


class ActivityAssets(Model, kw_only=True, frozen=True):
    large_image: str | UnsetType = UNSET
    large_text: str | UnsetType = UNSET
    small_image: str | UnsetType = UNSET
    small_text: str | UnsetType = UNSET


class Activity(Model, kw_only=True, frozen=True):
    name: str
    type: int
    url: str | UnsetType | None = UNSET
    # Unix milliseconds.
    created_at: int | UnsetType = UNSET
    timestamps: ActivityTimestamps | UnsetType = UNSET
    application_id: Snowflake | UnsetType = UNSET
    details: str | UnsetType | None = UNSET
    state: str | UnsetType | None = UNSET
    emoji: ActivityEmoji | UnsetType | None = UNSET
    party: ActivityParty | UnsetType = UNSET
    assets: ActivityAssets | UnsetType = UNSET
    instance: bool | UnsetType = UNSET
    flags: int | UnsetType = UNSET
    # Bots receive the buttons' labels.
    buttons: list[Any] | UnsetType = UNSET


class ClientStatus(Model, kw_only=True, frozen=True):
    desktop: str | UnsetType = UNSET
    mobile: str | UnsetType = UNSET
    web: str | UnsetType = UNSET


class PresenceUpdate(Model, kw_only=True, frozen=True):
    """PRESENCE_UPDATE, and each of GUILD_CREATE's ``presences`` (without ``guild_id``)."""

    user: PartialUser
    guild_id: Snowflake | UnsetType = UNSET
    status: str
    activities: list[Activity] = []
    client_status: ClientStatus | UnsetType = UNSET

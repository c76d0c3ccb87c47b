"""Interactions: slash commands, context menus, components, autocomplete, modals."""

from __future__ import annotations

from typing import Any

from msgspec import UNSET, UnsetType

from workers.models.base import Model, Permissions, Snowflake
from workers.models.channels import Channel
from workers.models.messages import Component, Message, ResolvedData
from workers.models.users import Member, User


class InteractionOption(Model, kw_only=True, frozen=True):
    """An option the user filled in: a value, or a subcommand (group) with its own
    options. Options of type user, channel, role and mentionable carry the id as a
    string (look it up in ``data.resolved``)."""

    name: str
    type: int
    value: str | int | float | bool | UnsetType = UNSET
    options: list[InteractionOption] | UnsetType = UNSET
    # Autocomplete: the option the user is typing.
    focused: bool | UnsetType = UNSET


class InteractionData(Model, kw_only=True, frozen=True):
    """Application command data (``id``, ``name``, ``type``, ``options``...), component
    data (``custom_id``, ``component_type``, ``values``) or modal submit data
    (``custom_id``, ``components``): whichever the interaction's type carries."""

    id: Snowflake | UnsetType = UNSET
    name: str | UnsetType = UNSET
    type: int | UnsetType = UNSET
    resolved: ResolvedData | UnsetType = UNSET
    options: list[InteractionOption] | UnsetType = UNSET
    guild_id: Snowflake | UnsetType = UNSET
    target_id: Snowflake | UnsetType = UNSET
    custom_id: str | UnsetType = UNSET
    component_type: int | UnsetType = UNSET
    values: list[str] | UnsetType = UNSET
    components: list[Component] | UnsetType = UNSET


class InteractionGuild(Model, kw_only=True, frozen=True):
    id: Snowflake
    locale: str | UnsetType = UNSET
    features: list[str] | UnsetType = UNSET


class Interaction(Model, kw_only=True, frozen=True):
    """INTERACTION_CREATE. In a guild ``member`` is set (its ``user`` is the invoker);
    in a DM ``user`` is."""

    id: Snowflake
    application_id: Snowflake | UnsetType = UNSET
    type: int
    data: InteractionData | UnsetType = UNSET
    guild: InteractionGuild | UnsetType = UNSET
    guild_id: Snowflake | UnsetType = UNSET
    channel: Channel | UnsetType = UNSET
    channel_id: Snowflake | UnsetType = UNSET
    member: Member | UnsetType = UNSET
    user: User | UnsetType = UNSET
    token: str
    version: int | UnsetType = UNSET
    message: Message | UnsetType = UNSET
    app_permissions: Permissions | UnsetType = UNSET
    locale: str | UnsetType = UNSET
    guild_locale: str | UnsetType = UNSET
    entitlements: list[Any] | UnsetType = UNSET
    authorizing_integration_owners: dict[int, Snowflake] | UnsetType = UNSET
    context: int | UnsetType = UNSET
    attachment_size_limit: int | UnsetType = UNSET

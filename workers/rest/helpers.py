"""What bots do most, on top of ``RestClient.request``: messages, reactions, interaction
answers, application commands, fetching objects. Each returns Discord's JSON (typed models
arrive with the typed-events issue); errors are the typed ones of ``errors``."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from workers.rest.files import File

Snowflake = str | int


class InteractionResponseType(enum.IntEnum):
    PONG = 1
    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    APPLICATION_COMMAND_AUTOCOMPLETE_RESULT = 8
    MODAL = 9


EPHEMERAL = 1 << 6  # message flag


def message_body(content: str | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in fields.items() if v is not None}
    if content is not None:
        body["content"] = content
    return body


class RestHelpers:
    """Mixed into ``RestClient``, which provides ``request``."""

    async def request(
        self,
        method: str,
        template: str,
        *,
        json: Any = None,
        query: Mapping[str, str | int | bool] | None = None,
        files: list[File] | None = None,
        reason: str | None = None,
        **params: str | int,
    ) -> Any:
        raise NotImplementedError

    async def send_message(
        self,
        channel_id: Snowflake,
        content: str | None = None,
        *,
        files: list[File] | None = None,
        **fields: Any,
    ) -> Any:
        """``fields`` are the JSON fields of Create Message (embeds, components,
        allowed_mentions, message_reference, ...)."""
        return await self.request(
            "POST",
            "/channels/{channel_id}/messages",
            channel_id=channel_id,
            json=message_body(content, fields),
            files=files,
        )

    async def reply(
        self,
        message: Mapping[str, Any] | Any,
        content: str | None = None,
        *,
        mention: bool = False,
        **fields: Any,
    ) -> Any:
        """Answer ``message`` (a MESSAGE_CREATE ``d``, or its ``workers.models`` model) in its
        channel, as a reply to it; ``mention=False`` does not ping its author."""
        if isinstance(message, Mapping):
            ids = (message["id"], message["channel_id"], message.get("guild_id"))
        else:  # a typed model: an absent guild_id is msgspec.UNSET
            guild = getattr(message, "guild_id", None)
            ids = (message.id, message.channel_id, guild if isinstance(guild, int) else None)
        message_id, channel_id, guild_id = ids
        reference: dict[str, Any] = {
            "message_id": str(message_id),
            "channel_id": str(channel_id),
            "fail_if_not_exists": False,
        }
        if guild_id is not None:
            reference["guild_id"] = str(guild_id)
        fields.setdefault("allowed_mentions", {"replied_user": mention})
        return await self.send_message(channel_id, content, message_reference=reference, **fields)

    async def edit_message(
        self,
        channel_id: Snowflake,
        message_id: Snowflake,
        content: str | None = None,
        **fields: Any,
    ) -> Any:
        return await self.request(
            "PATCH",
            "/channels/{channel_id}/messages/{message_id}",
            channel_id=channel_id,
            message_id=message_id,
            json=message_body(content, fields),
        )

    async def delete_message(
        self, channel_id: Snowflake, message_id: Snowflake, *, reason: str | None = None
    ) -> None:
        await self.request(
            "DELETE",
            "/channels/{channel_id}/messages/{message_id}",
            channel_id=channel_id,
            message_id=message_id,
            reason=reason,
        )

    async def add_reaction(self, channel_id: Snowflake, message_id: Snowflake, emoji: str) -> None:
        """``emoji``: a unicode emoji, or ``name:id`` for a custom one."""
        await self.request(
            "PUT",
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
            channel_id=channel_id,
            message_id=message_id,
            emoji=emoji,
        )

    # ---------------------------------------------------------------- interactions

    async def interaction_callback(
        self,
        interaction_id: Snowflake,
        interaction_token: str,
        type: InteractionResponseType | int,
        data: Mapping[str, Any] | None = None,
    ) -> Any:
        """The initial response: once, within 3 s of the interaction."""
        body: dict[str, Any] = {"type": int(type)}
        if data is not None:
            body["data"] = dict(data)
        return await self.request(
            "POST",
            "/interactions/{interaction_id}/{interaction_token}/callback",
            interaction_id=interaction_id,
            interaction_token=interaction_token,
            json=body,
        )

    async def respond(
        self,
        interaction: Mapping[str, Any],
        content: str | None = None,
        *,
        ephemeral: bool = False,
        **fields: Any,
    ) -> Any:
        """Answer ``interaction`` (an INTERACTION_CREATE ``d``) with a message."""
        data = message_body(content, fields)
        if ephemeral:
            data["flags"] = int(data.get("flags", 0)) | EPHEMERAL
        return await self.interaction_callback(
            interaction["id"],
            interaction["token"],
            InteractionResponseType.CHANNEL_MESSAGE_WITH_SOURCE,
            data,
        )

    async def followup(
        self,
        application_id: Snowflake,
        interaction_token: str,
        content: str | None = None,
        **fields: Any,
    ) -> Any:
        """Another message after the initial response (for 15 minutes)."""
        return await self._interaction_webhook(
            "POST", "", application_id, interaction_token, message_body(content, fields)
        )

    async def edit_original(
        self,
        application_id: Snowflake,
        interaction_token: str,
        content: str | None = None,
        **fields: Any,
    ) -> Any:
        """Change the initial response."""
        return await self._interaction_webhook(
            "PATCH",
            "/messages/@original",
            application_id,
            interaction_token,
            message_body(content, fields),
        )

    async def _interaction_webhook(
        self,
        method: str,
        suffix: str,
        application_id: Snowflake,
        interaction_token: str,
        body: dict[str, Any],
    ) -> Any:
        return await self.request(
            method,
            "/webhooks/{application_id}/{interaction_token}" + suffix,
            application_id=application_id,
            interaction_token=interaction_token,
            json=body,
        )

    async def bulk_overwrite_commands(
        self,
        application_id: Snowflake,
        commands: Sequence[Mapping[str, Any]],
        *,
        guild_id: Snowflake | None = None,
    ) -> Any:
        """Replace the application's (or one guild's) commands with ``commands``."""
        if guild_id is None:
            return await self.request(
                "PUT",
                "/applications/{application_id}/commands",
                application_id=application_id,
                json=[dict(c) for c in commands],
            )
        return await self.request(
            "PUT",
            "/applications/{application_id}/guilds/{guild_id}/commands",
            application_id=application_id,
            guild_id=guild_id,
            json=[dict(c) for c in commands],
        )

    # ---------------------------------------------------------------- fetch

    async def fetch_application(self) -> Any:
        return await self.request("GET", "/applications/@me")

    async def fetch_channel(self, channel_id: Snowflake) -> Any:
        return await self.request("GET", "/channels/{channel_id}", channel_id=channel_id)

    async def fetch_guild(self, guild_id: Snowflake, *, with_counts: bool = False) -> Any:
        return await self.request(
            "GET", "/guilds/{guild_id}", guild_id=guild_id, query={"with_counts": with_counts}
        )

    async def fetch_member(self, guild_id: Snowflake, user_id: Snowflake) -> Any:
        return await self.request(
            "GET", "/guilds/{guild_id}/members/{user_id}", guild_id=guild_id, user_id=user_id
        )

    async def fetch_user(self, user_id: Snowflake | None = None) -> Any:
        """A user, or the bot itself without ``user_id``."""
        if user_id is None:
            return await self.request("GET", "/users/@me")
        return await self.request("GET", "/users/{user_id}", user_id=user_id)

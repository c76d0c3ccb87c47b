"""REST routes of the bot's application: global and guild application commands, the one
callback an interaction accepts (within ``interaction_response_s``, once: then 404 10062 or
400 40060, as Discord answers), followups and the original response through the webhook
routes of the interaction token (valid ``interaction_token_ttl_s``). Interaction routes
need no bot token and are not under the global rate limit."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from fakegateway import events
from fakegateway.rest import API_VERSIONS, ApiError, json_body, json_response, require_bot
from fakegateway.rest import snowflake_param as _id
from fakegateway.rest_channels import (
    UNKNOWN_GUILD,
    UNKNOWN_MESSAGE,
    checked_content,
    invalid_form,
)
from fakegateway.state import STATE_KEY, FakeState
from fakegateway.store import Interaction
from fakegateway.world import FakeUser

UNKNOWN_APPLICATION: Final = (404, 10002, "Unknown Application")
UNKNOWN_WEBHOOK: Final = (404, 10015, "Unknown Webhook")
UNKNOWN_INTERACTION: Final = (404, 10062, "Unknown interaction")
ALREADY_ACKNOWLEDGED: Final = (400, 40060, "Interaction has already been acknowledged.")
MISSING_ACCESS: Final = (403, 50001, "Missing Access")
MAX_COMMANDS: Final = 100
# Interaction response types (Discord's numbering).
PONG, MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 1, 4, 5, 6, 7
CALLBACK_TYPES: Final = frozenset({1, 4, 5, 6, 7, 8, 9, 10, 12})
# The message flag of a deferred response still "thinking".
LOADING_FLAG: Final = 1 << 7


def _application(request: web.Request) -> tuple[FakeState, FakeUser]:
    bot = require_bot(request)
    if _id(request, "application_id", UNKNOWN_APPLICATION) != bot.id:
        raise ApiError(*MISSING_ACCESS)
    return request.app[STATE_KEY], bot


def _guild_id(request: web.Request, state: FakeState) -> int | None:
    if "guild_id" not in request.match_info:
        return None
    guild_id = _id(request, "guild_id", UNKNOWN_GUILD)
    if guild_id not in state.world.by_id:
        raise ApiError(*UNKNOWN_GUILD)
    return guild_id


def _command(
    state: FakeState, bot: FakeUser, raw: Any, guild_id: int, index: int | None
) -> dict[str, Any]:
    """One validated command object; ``guild_id`` 0 for a global command."""
    where = "_root" if index is None else str(index)
    if not isinstance(raw, dict):
        raise invalid_form(where, "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
    kind = raw.get("type", 1)
    name = raw.get("name")
    description = raw.get("description", "")
    if kind not in (1, 2, 3, 4):
        raise invalid_form(
            f"{where}.type", "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4}."
        )
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= 32
        or (kind == 1 and name != name.lower())
    ):
        raise invalid_form(f"{where}.name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
    if kind == 1 and (not isinstance(description, str) or not 1 <= len(description) <= 100):
        raise invalid_form(
            f"{where}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )
    known = state.commands.find(name, guild_id or None)
    return {
        "id": known["id"] if known is not None else str(state.ids.next()),
        "application_id": str(bot.id),
        "version": str(state.ids.next()),
        "default_member_permissions": raw.get("default_member_permissions"),
        "type": kind,
        "name": name,
        "name_localizations": raw.get("name_localizations"),
        "description": description if kind == 1 else "",
        "description_localizations": raw.get("description_localizations"),
        "options": raw.get("options") or [],
        "contexts": raw.get("contexts"),
        "integration_types": raw.get("integration_types") or [0],
        "nsfw": bool(raw.get("nsfw", False)),
    } | ({"guild_id": str(guild_id)} if guild_id else {})


async def get_commands(request: web.Request) -> web.Response:
    state, _ = _application(request)
    return json_response(state.commands.commands(_guild_id(request, state)))


async def put_commands(request: web.Request) -> web.Response:
    """Bulk overwrite: the list becomes the application's commands."""
    state, bot = _application(request)
    guild_id = _guild_id(request, state)
    body = await json_body(request)
    if not isinstance(body, list):
        raise invalid_form("_root", "BASE_TYPE_LIST", "Must be an array.")
    if len(body) > MAX_COMMANDS:
        raise invalid_form("_root", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
    commands = [_command(state, bot, raw, guild_id or 0, i) for i, raw in enumerate(body)]
    stored = state.commands.commands(guild_id)
    stored[:] = commands
    state.changed()
    return json_response(commands)


async def post_command(request: web.Request) -> web.Response:
    state, bot = _application(request)
    guild_id = _guild_id(request, state)
    command = _command(state, bot, await json_body(request), guild_id or 0, None)
    stored = state.commands.commands(guild_id)
    stored[:] = [c for c in stored if c["name"] != command["name"]] + [command]
    state.changed()
    return json_response(command, status=201)


def _interaction(request: web.Request) -> tuple[FakeState, Interaction]:
    state = request.app[STATE_KEY]
    interaction_id = _id(request, "interaction_id", UNKNOWN_INTERACTION)
    found = state.interactions.get(interaction_id, request.match_info["interaction_token"])
    if found is None:
        raise ApiError(*UNKNOWN_INTERACTION)
    return state, found


def _response_message(
    state: FakeState, interaction: Interaction, data: dict[str, Any], flags: int = 0
) -> dict[str, Any]:
    """Post the message an interaction response or followup makes."""
    bot = state.bot
    user = next((u for u in state.world.users if u.id == interaction.user_id), bot)
    metadata = {
        "id": str(interaction.id),
        "type": 2,
        "name": interaction.command,
        "user": user.payload(),
        "authorizing_integration_owners": {"0": str(interaction.guild_id)},
    }
    content, embeds, components = checked_content(data)
    extra_flags = data.get("flags") or 0
    if isinstance(extra_flags, bool) or not isinstance(extra_flags, int):
        raise invalid_form("flags", "BASE_TYPE_INTEGER", "Must be an integer.")
    message, _ = events.post_message(
        state,
        channel_id=interaction.channel_id,
        author=bot,
        bot=bot,
        content=content,
        embeds=embeds,
        components=components,
        extra={
            "type": 20,
            "flags": flags | extra_flags,
            "application_id": str(bot.id),
            "webhook_id": str(bot.id),
            "interaction_metadata": metadata,
        },
        author_is_bot=True,
    )
    return message


async def post_callback(request: web.Request) -> web.Response:
    state, interaction = _interaction(request)
    if state.clock.monotonic() - interaction.created_mono > state.config.interaction_response_s:
        raise ApiError(*UNKNOWN_INTERACTION)
    if interaction.callbacks:
        raise ApiError(*ALREADY_ACKNOWLEDGED)
    body = await json_body(request)
    if not isinstance(body, dict) or body.get("type") not in CALLBACK_TYPES:
        raise invalid_form("type", "BASE_TYPE_CHOICES", "Value must be one of CALLBACK_TYPES.")
    data = body.get("data") or {}
    if not isinstance(data, dict):
        raise invalid_form("data", "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
    kind = body["type"]
    message = None
    if kind == MESSAGE:
        content, embeds, components = checked_content(data)
        if not (content or embeds or components):
            raise ApiError(400, 50006, "Cannot send an empty message")
        message = _response_message(state, interaction, data)
    elif kind == DEFERRED_MESSAGE:
        message = _response_message(state, interaction, {"content": ""}, LOADING_FLAG)
    if message is not None:
        interaction.original_message_id = int(message["id"])
    interaction.callbacks.append({"type": kind, "data": data, "at": round(state.uptime(), 6)})
    state.changed()
    if request.query.get("with_response") != "true":
        return web.Response(status=204)
    resource: dict[str, Any] = {"type": kind}
    if message is not None:
        resource["message"] = message
    callback = {
        "id": str(interaction.id),
        "type": 2,
        "response_message_id": message["id"] if message is not None else None,
        "response_message_loading": kind == DEFERRED_MESSAGE,
        "response_message_ephemeral": False,
    }
    return json_response({"interaction": callback, "resource": resource})


def _webhook(request: web.Request) -> tuple[FakeState, Interaction]:
    state = request.app[STATE_KEY]
    interaction = state.interactions.by_token.get(request.match_info["webhook_token"])
    if (
        interaction is None
        or _id(request, "webhook_id", UNKNOWN_WEBHOOK) != state.bot.id
        or state.clock.monotonic() - interaction.created_mono > state.config.interaction_token_ttl_s
    ):
        raise ApiError(*UNKNOWN_WEBHOOK)
    return state, interaction


async def post_followup(request: web.Request) -> web.Response:
    state, interaction = _webhook(request)
    if not interaction.callbacks:
        raise ApiError(*UNKNOWN_WEBHOOK)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise invalid_form("_root", "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
    content, embeds, components = checked_content(body)
    if not (content or embeds or components):
        raise ApiError(400, 50006, "Cannot send an empty message")
    message = _response_message(state, interaction, body)
    interaction.followups.append(message["id"])
    return json_response(message)


def _original(request: web.Request) -> tuple[FakeState, Interaction, dict[str, Any]]:
    state, interaction = _webhook(request)
    message_id = interaction.original_message_id
    message = None if message_id is None else state.messages.get(interaction.channel_id, message_id)
    if message is None:
        raise ApiError(*UNKNOWN_MESSAGE)
    return state, interaction, message


async def get_original(request: web.Request) -> web.Response:
    _, _, message = _original(request)
    return json_response(message)


async def patch_original(request: web.Request) -> web.Response:
    state, _, message = _original(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise invalid_form("_root", "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
    content, embeds, components = checked_content(body | {"content": body.get("content", "")})
    changes: dict[str, Any] = {"flags": int(message.get("flags", 0)) & ~LOADING_FLAG}
    if "content" in body:
        changes["content"] = content
    if "embeds" in body:
        changes["embeds"] = embeds
    if "components" in body:
        changes["components"] = components
    return json_response(events.update_message(state, message, changes, state.bot))


async def delete_original(request: web.Request) -> web.Response:
    state, interaction, message = _original(request)
    events.delete_message(state, message)
    interaction.original_message_id = None
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    r = app.router
    for version in API_VERSIONS:
        base = f"/api/{version}"
        for commands in (
            f"{base}/applications/{{application_id}}/commands",
            f"{base}/applications/{{application_id}}/guilds/{{guild_id}}/commands",
        ):
            r.add_get(commands, get_commands)
            r.add_put(commands, put_commands)
            r.add_post(commands, post_command)
        r.add_post(
            f"{base}/interactions/{{interaction_id}}/{{interaction_token}}/callback",
            post_callback,
        )
        webhook = f"{base}/webhooks/{{webhook_id}}/{{webhook_token}}"
        r.add_post(webhook, post_followup)
        r.add_get(webhook + "/messages/@original", get_original)
        r.add_patch(webhook + "/messages/@original", patch_original)
        r.add_delete(webhook + "/messages/@original", delete_original)

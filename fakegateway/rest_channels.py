"""REST routes on the fake's world: send, edit, fetch and delete messages, add and remove
the bot's reactions (each dispatching its gateway event), and fetch channels, guilds,
members and users. Errors carry Discord's codes (10003 Unknown Channel, 50006 empty
message, 50035 Invalid Form Body ...)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import BodyPartReader, web

from fakegateway import events
from fakegateway.rest import (
    API_VERSIONS,
    ApiError,
    decode_json,
    json_body,
    json_response,
    require_bot,
    user_json,
)
from fakegateway.rest import snowflake_param as _id
from fakegateway.state import STATE_KEY, FakeState
from fakegateway.world import FakeUser

MAX_CONTENT: Final = 2000
MAX_EMBEDS: Final = 10
UNKNOWN_CHANNEL: Final = (404, 10003, "Unknown Channel")
UNKNOWN_GUILD: Final = (404, 10004, "Unknown Guild")
UNKNOWN_MEMBER: Final = (404, 10007, "Unknown Member")
UNKNOWN_MESSAGE: Final = (404, 10008, "Unknown Message")
UNKNOWN_USER: Final = (404, 10013, "Unknown User")
EMPTY_MESSAGE: Final = (400, 50006, "Cannot send an empty message")
NOT_AUTHOR: Final = (403, 50005, "Cannot edit a message authored by another user")


def invalid_form(field: str, code: str, message: str) -> ApiError:
    errors = {field: {"_errors": [{"code": code, "message": message}]}}
    return ApiError(400, 50035, "Invalid Form Body", errors)


def _channel(request: web.Request) -> tuple[FakeState, int]:
    state = request.app[STATE_KEY]
    channel_id = _id(request, "channel_id", UNKNOWN_CHANNEL)
    if not events.channel_exists(state, channel_id):
        raise ApiError(*UNKNOWN_CHANNEL)
    return state, channel_id


async def _message_payload(request: web.Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The JSON body, or ``payload_json`` and the files of a multipart body."""
    if request.content_type != "multipart/form-data":
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid_form("_root", "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
        return body, []
    payload: dict[str, Any] = {}
    files: list[dict[str, Any]] = []
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        data = await part.read(decode=False)
        if part.name == "payload_json":
            decoded = decode_json(data)
            payload = decoded if isinstance(decoded, dict) else {}
        elif part.filename:
            files.append({"filename": part.filename, "size": len(data)})
    return payload, files


def checked_content(body: dict[str, Any]) -> tuple[str, list[Any], list[Any]]:
    content = body.get("content") or ""
    if not isinstance(content, str):
        raise invalid_form("content", "BASE_TYPE_STRING", "Must be a string.")
    if len(content) > MAX_CONTENT:
        raise invalid_form(
            "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
        )
    embeds = body.get("embeds") or []
    if "embed" in body and isinstance(body["embed"], dict):
        embeds = [body["embed"]]
    if not isinstance(embeds, list) or len(embeds) > MAX_EMBEDS:
        raise invalid_form("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    components = body.get("components") or []
    if not isinstance(components, list):
        raise invalid_form("components", "BASE_TYPE_LIST", "Must be an array.")
    return content, embeds, components


def _reference(body: dict[str, Any], channel_id: int, state: FakeState) -> dict[str, Any] | None:
    ref = body.get("message_reference")
    if ref is None:
        return None
    if not isinstance(ref, dict) or "message_id" not in ref:
        raise invalid_form("message_reference", "MODEL_TYPE_REQUIRED", "This field is required")
    guild = events.channel_guild(state, channel_id)
    out = {
        "type": 0,
        "message_id": str(ref["message_id"]),
        "channel_id": str(ref.get("channel_id", channel_id)),
    }
    if guild is not None:
        out["guild_id"] = str(ref.get("guild_id", guild.id))
    return out


async def post_message(request: web.Request) -> web.Response:
    bot = require_bot(request)
    state, channel_id = _channel(request)
    body, files = await _message_payload(request)
    content, embeds, components = checked_content(body)
    if not (content or embeds or components or files or body.get("sticker_ids")):
        raise ApiError(*EMPTY_MESSAGE)
    extra: dict[str, Any] = {}
    if files:
        extra["attachments"] = [
            {
                "id": str(state.ids.next()),
                "filename": f["filename"],
                "size": f["size"],
                "url": f"{state.base_url}/attachments/{f['filename']}",
                "proxy_url": f"{state.base_url}/attachments/{f['filename']}",
            }
            for f in files
        ]
    if isinstance(body.get("nonce"), (str, int)):
        extra["nonce"] = body["nonce"]
    message, _ = events.post_message(
        state,
        channel_id=channel_id,
        author=bot,
        bot=bot,
        content=content,
        embeds=embeds,
        components=components,
        message_reference=_reference(body, channel_id, state),
        extra=extra,
        author_is_bot=True,
    )
    return json_response(message)


def _stored(request: web.Request) -> tuple[FakeState, dict[str, Any]]:
    state, channel_id = _channel(request)
    message_id = _id(request, "message_id", UNKNOWN_MESSAGE)
    message = state.messages.get(channel_id, message_id)
    if message is None:
        raise ApiError(*UNKNOWN_MESSAGE)
    return state, message


async def get_messages(request: web.Request) -> web.Response:
    """The channel's stored messages, newest first, as Discord pages them (``limit`` 1-100,
    default 50; ``before`` / ``after`` a message id)."""
    require_bot(request)
    state, channel_id = _channel(request)
    query = request.query
    try:
        limit = int(query.get("limit", "50"))
        before = int(query["before"]) if "before" in query else None
        after = int(query["after"]) if "after" in query else None
    except ValueError:
        raise invalid_form("limit", "NUMBER_TYPE_COERCE", "Value is not int.") from None
    if not 1 <= limit <= 100:
        raise invalid_form("limit", "NUMBER_TYPE_MAX", "int value should be 1 to 100.")
    found = [
        m
        for m in state.messages.in_channel(channel_id)
        if (before is None or int(m["id"]) < before) and (after is None or int(m["id"]) > after)
    ]
    page = found[:limit] if after is not None else found[-limit:]
    return json_response(list(reversed(page)))


async def get_message(request: web.Request) -> web.Response:
    require_bot(request)
    _, message = _stored(request)
    return json_response(message)


async def patch_message(request: web.Request) -> web.Response:
    bot = require_bot(request)
    state, message = _stored(request)
    if message["author"]["id"] != str(bot.id):
        raise ApiError(*NOT_AUTHOR)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise invalid_form("_root", "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
    content, embeds, components = checked_content(body | {"content": body.get("content", "")})
    changes: dict[str, Any] = {}
    if "content" in body:
        changes["content"] = content
    if "embeds" in body or "embed" in body:
        changes["embeds"] = embeds
    if "components" in body:
        changes["components"] = components
    return json_response(events.update_message(state, message, changes, bot))


async def delete_message(request: web.Request) -> web.Response:
    require_bot(request)
    state, message = _stored(request)
    events.delete_message(state, message)
    return web.Response(status=204)


async def _react(request: web.Request, added: bool) -> web.Response:
    bot = require_bot(request)
    state, channel_id = _channel(request)
    message_id = _id(request, "message_id", UNKNOWN_MESSAGE)
    # Messages the fake's traffic made up are not stored; reacting to them still works.
    events.reaction(
        state,
        added=added,
        channel_id=channel_id,
        message_id=message_id,
        emoji=events.parse_emoji(request.match_info["emoji"]),
        user=bot,
    )
    return web.Response(status=204)


async def put_reaction(request: web.Request) -> web.Response:
    return await _react(request, True)


async def delete_reaction(request: web.Request) -> web.Response:
    return await _react(request, False)


async def get_channel(request: web.Request) -> web.Response:
    require_bot(request)
    state, channel_id = _channel(request)
    guild = events.channel_guild(state, channel_id)
    if guild is None:
        index = state.world.dm_channels.index(channel_id)
        user = state.world.users[index]
        dm = {"id": str(channel_id), "type": 1, "last_message_id": None, "flags": 0}
        return json_response(dm | {"recipients": [user.payload()]})
    channel = next(c for c in state.world.channels(guild) if c["id"] == str(channel_id))
    return json_response(channel | {"guild_id": str(guild.id)})


async def get_guild(request: web.Request) -> web.Response:
    require_bot(request)
    state = request.app[STATE_KEY]
    guild = state.world.by_id.get(_id(request, "guild_id", UNKNOWN_GUILD))
    if guild is None:
        raise ApiError(*UNKNOWN_GUILD)
    body = state.world.guild_object(guild)
    if request.query.get("with_counts") == "true":
        body |= {
            "approximate_member_count": guild.member_count,
            "approximate_presence_count": guild.member_count // 3,
        }
    return json_response(body)


def _member_user(state: FakeState, guild_id: int, user_id: int, bot: FakeUser) -> FakeUser:
    guild = state.world.by_id.get(guild_id)
    if guild is None:
        raise ApiError(*UNKNOWN_GUILD)
    if user_id == bot.id:
        return bot
    for index in range(guild.member_count - 1):
        user = guild.member_user(state.world, index)
        if user.id == user_id:
            return user
    raise ApiError(*UNKNOWN_MEMBER)


async def get_member(request: web.Request) -> web.Response:
    bot = require_bot(request)
    state = request.app[STATE_KEY]
    guild_id = _id(request, "guild_id", UNKNOWN_GUILD)
    user = _member_user(state, guild_id, _id(request, "user_id", UNKNOWN_MEMBER), bot)
    return json_response(state.world.member(state.world.by_id[guild_id], user))


async def get_user(request: web.Request) -> web.Response:
    bot = require_bot(request)
    state = request.app[STATE_KEY]
    user_id = _id(request, "user_id", UNKNOWN_USER)
    if user_id == bot.id:
        return json_response(user_json(bot, bot=True))
    for user in state.world.users:
        if user.id == user_id:
            return json_response(user_json(user))
    raise ApiError(*UNKNOWN_USER)


def add_routes(app: web.Application) -> None:
    r = app.router
    for version in API_VERSIONS:
        channel = f"/api/{version}/channels/{{channel_id}}"
        message = channel + "/messages/{message_id}"
        reaction = message + "/reactions/{emoji}/@me"
        r.add_post(channel + "/messages", post_message)
        r.add_get(channel + "/messages", get_messages)
        r.add_get(message, get_message)
        r.add_patch(message, patch_message)
        r.add_delete(message, delete_message)
        r.add_put(reaction, put_reaction)
        r.add_delete(reaction, delete_reaction)
        r.add_get(channel, get_channel)
        r.add_get(f"/api/{version}/guilds/{{guild_id}}", get_guild)
        r.add_get(f"/api/{version}/guilds/{{guild_id}}/members/{{user_id}}", get_member)
        r.add_get(f"/api/{version}/users/{{user_id}}", get_user)

"""Each helper sends the request Discord documents for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import msgspec
import pytest

from tests.rest.conftest import MakeClient
from tests.rest.discord_server import Canned, DiscordServer
from workers.rest.client import RestClient

MESSAGE = {"id": "9", "channel_id": "5", "guild_id": "3", "content": "!ping"}
INTERACTION = {"id": "77", "token": "itok", "application_id": "1"}

Call = Callable[[RestClient], Awaitable[Any]]

CASES: list[tuple[str, Call, str, str, Any]] = [
    ("send", lambda r: r.send_message(5, "hi"), "POST", "/channels/5/messages", {"content": "hi"}),
    (
        "reply",
        lambda r: r.reply(MESSAGE, "pong"),
        "POST",
        "/channels/5/messages",
        {
            "message_reference": {
                "message_id": "9",
                "channel_id": "5",
                "fail_if_not_exists": False,
                "guild_id": "3",
            },
            "allowed_mentions": {"replied_user": False},
            "content": "pong",
        },
    ),
    (
        "edit",
        lambda r: r.edit_message(5, 9, "new"),
        "PATCH",
        "/channels/5/messages/9",
        {"content": "new"},
    ),
    ("delete", lambda r: r.delete_message(5, 9), "DELETE", "/channels/5/messages/9", None),
    (
        "react",
        lambda r: r.add_reaction(5, 9, "👍"),
        "PUT",
        "/channels/5/messages/9/reactions/%F0%9F%91%8D/@me",
        None,
    ),
    (
        "respond",
        lambda r: r.respond(INTERACTION, "pong", ephemeral=True),
        "POST",
        "/interactions/77/itok/callback",
        {"type": 4, "data": {"content": "pong", "flags": 64}},
    ),
    (
        "followup",
        lambda r: r.followup(1, "itok", "more"),
        "POST",
        "/webhooks/1/itok",
        {"content": "more"},
    ),
    (
        "edit original",
        lambda r: r.edit_original(1, "itok", "changed"),
        "PATCH",
        "/webhooks/1/itok/messages/@original",
        {"content": "changed"},
    ),
    (
        "commands",
        lambda r: r.bulk_overwrite_commands(1, [{"name": "ping", "description": "pong"}]),
        "PUT",
        "/applications/1/commands",
        [{"name": "ping", "description": "pong"}],
    ),
    (
        "guild commands",
        lambda r: r.bulk_overwrite_commands(1, [], guild_id=3),
        "PUT",
        "/applications/1/guilds/3/commands",
        [],
    ),
    ("channel", lambda r: r.fetch_channel(5), "GET", "/channels/5", None),
    (
        "guild",
        lambda r: r.fetch_guild(3, with_counts=True),
        "GET",
        "/guilds/3?with_counts=true",
        None,
    ),
    ("member", lambda r: r.fetch_member(3, 4), "GET", "/guilds/3/members/4", None),
    ("user", lambda r: r.fetch_user(4), "GET", "/users/4", None),
    ("me", lambda r: r.fetch_user(), "GET", "/users/@me", None),
    ("application", lambda r: r.fetch_application(), "GET", "/applications/@me", None),
]


@pytest.mark.parametrize(
    ("name", "call", "method", "path", "body"), CASES, ids=[c[0] for c in CASES]
)
async def test_helper_sends_the_documented_request(
    discord: DiscordServer,
    make_client: MakeClient,
    name: str,
    call: Call,
    method: str,
    path: str,
    body: Any,
) -> None:
    rest = await make_client()
    discord.script[f"{method} {unquote(path.split('?')[0])}"].append(Canned(200, b'{"ok": true}'))
    await call(rest)
    assert discord.seen_requests[-1] == (method, path)
    sent = discord.seen_bodies[-1]
    assert (msgspec.json.decode(sent) if sent else None) == body

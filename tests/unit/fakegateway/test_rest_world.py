"""GET routes on the fake's world, the application object, and the unknown route."""

from __future__ import annotations

import pytest

from fakegateway import FakeGateway
from tests.unit.fakegateway.rest_helpers import call

# Every field client libraries read from the application (hikari's fetch_application,
# discord.py's application_info).
APPLICATION_FIELDS = {
    "id",
    "name",
    "icon",
    "description",
    "summary",
    "bot_public",
    "bot_require_code_grant",
    "verify_key",
    "flags",
    "owner",
    "team",
    "approximate_guild_count",
    "approximate_user_install_count",
    "rpc_origins",
    "redirect_uris",
    "interactions_endpoint_url",
    "role_connections_verification_url",
    "install_params",
    "integration_types_config",
    "custom_install_url",
    "terms_of_service_url",
    "privacy_policy_url",
    "cover_image",
    "guild_id",
    "primary_sku_id",
    "slug",
    "tags",
    "bot",
}


@pytest.mark.parametrize("path", ["/applications/@me", "/oauth2/applications/@me"])
async def test_application_object_is_complete(fg: FakeGateway, http, path):
    answer = await call(http, fg, "GET", path)
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
    assert set(answer.body) >= APPLICATION_FIELDS
    assert answer.body["approximate_guild_count"] == fg.config.guild_count
    assert answer.body["id"] == str(fg.state.bot.id)


async def test_unknown_api_route_checks_the_token_first(fg: FakeGateway, http):
    anonymous = await call(http, fg, "GET", "/no/such/route", token=None)
    assert anonymous.status == 401
    assert anonymous.body == {"message": "401: Unauthorized", "code": 0}
    known = await call(http, fg, "DELETE", "/no/such/route")
    assert known.status == 404 and known.headers["Content-Type"] == "application/json"
    assert known.body == {"message": "404: Not Found", "code": 0}


async def test_channel_guild_member_and_user_come_from_the_world(fg: FakeGateway, http):
    guild = fg.state.world.guilds[0]
    member = guild.member_user(fg.state.world, 0)
    channel = await call(http, fg, "GET", f"/channels/{guild.text_channels[0]}")
    assert channel.body["guild_id"] == str(guild.id) and channel.body["type"] == 0
    got = await call(http, fg, "GET", f"/guilds/{guild.id}?with_counts=true")
    assert got.body["name"] == guild.name
    assert got.body["approximate_member_count"] == guild.member_count
    got_member = await call(http, fg, "GET", f"/guilds/{guild.id}/members/{member.id}")
    assert got_member.body["user"]["id"] == str(member.id)
    user = await call(http, fg, "GET", f"/users/{member.id}")
    assert user.body["username"] == member.username
    me = await call(http, fg, "GET", "/users/@me")
    assert me.body["id"] == str(fg.state.bot.id) and me.body["bot"] is True


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/channels/1", 10003),
        ("/guilds/1", 10004),
        ("/users/1", 10013),
        ("/channels/abc", 10003),
    ],
)
async def test_unknown_things_get_discords_codes(fg: FakeGateway, http, path, code):
    answer = await call(http, fg, "GET", path)
    assert (answer.status, answer.body["code"]) == (404, code)

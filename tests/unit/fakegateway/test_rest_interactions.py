"""Application commands and interactions: one callback within the response window, then
followups and edits of the original through the interaction token's webhook routes."""

from __future__ import annotations

import pytest

from tests.unit.fakegateway.client import ready_client
from tests.unit.fakegateway.conftest import Factory
from tests.unit.fakegateway.rest_helpers import call
from workers.clock import FakeClock

PING = {"name": "ping", "description": "Answers pong", "type": 1}


def _callback(made: dict) -> str:
    return f"/interactions/{made['interaction_id']}/{made['token']}/callback"


def _webhook(fg, made: dict) -> str:
    return f"/webhooks/{fg.state.bot.id}/{made['token']}"


async def test_bulk_overwrite_replaces_the_commands_and_keeps_ids(make_gateway: Factory, http):
    fg = await make_gateway()
    app = f"/applications/{fg.state.bot.id}/commands"
    first = await call(http, fg, "PUT", app, json=[PING, {"name": "help", "description": "?"}])
    assert first.status == 200 and [c["name"] for c in first.body] == ["ping", "help"]
    assert all(c["application_id"] == str(fg.state.bot.id) for c in first.body)
    second = await call(http, fg, "PUT", app, json=[PING])
    assert [c["id"] for c in second.body] == [first.body[0]["id"]]
    assert (await call(http, fg, "GET", app)).body == second.body


async def test_guild_commands_are_separate_from_global_ones(make_gateway: Factory, http):
    fg = await make_gateway()
    guild = fg.state.world.guilds[0].id
    path = f"/applications/{fg.state.bot.id}/guilds/{guild}/commands"
    put = await call(http, fg, "PUT", path, json=[PING])
    assert put.body[0]["guild_id"] == str(guild)
    assert (await call(http, fg, "GET", f"/applications/{fg.state.bot.id}/commands")).body == []
    assert (await call(http, fg, "GET", path)).body == put.body


@pytest.mark.parametrize(
    "bad",
    [
        [{"name": "Ping", "description": "upper case"}],
        [{"name": "ping"}],
        [{"name": "x" * 33, "description": "too long"}],
        {"name": "ping", "description": "not a list"},
    ],
)
async def test_invalid_commands_get_invalid_form_body(make_gateway: Factory, http, bad):
    fg = await make_gateway()
    answer = await call(http, fg, "PUT", f"/applications/{fg.state.bot.id}/commands", json=bad)
    assert (answer.status, answer.body["code"]) == (400, 50035)


async def test_commands_of_another_application_are_refused(make_gateway: Factory, http):
    fg = await make_gateway()
    answer = await call(http, fg, "PUT", "/applications/123456789012345678/commands", json=[PING])
    assert (answer.status, answer.body["code"]) == (403, 50001)


async def test_interaction_reaches_its_shard_and_its_callback_posts_the_response(
    make_gateway: Factory, http
):
    fg = await make_gateway()
    client = await ready_client(http, fg)
    made = fg.dispatch("INTERACTION_CREATE", command="ping")
    assert set(made) >= {"guild_id", "channel_id", "interaction_id", "shard_id", "token"}
    event = await client.recv_until(lambda m: m["t"] == "INTERACTION_CREATE")
    d = event["d"]
    assert d["id"] == made["interaction_id"] and d["token"] == made["token"]
    assert d["data"]["name"] == "ping" and d["channel_id"] == made["channel_id"]
    answer = await call(
        http, fg, "POST", _callback(made), json={"type": 4, "data": {"content": "pong"}}, token=None
    )
    assert answer.status == 204
    posted = await client.recv_until(lambda m: m["t"] == "MESSAGE_CREATE")
    assert posted["d"]["content"] == "pong"
    assert posted["d"]["interaction_metadata"]["id"] == made["interaction_id"]
    assert [m["content"] for m in fg.messages(made["channel_id"])] == ["pong"]
    (record,) = (await call(http, fg, "GET", "/_fake/interactions")).body
    assert record["id"] == made["interaction_id"]
    assert [c["type"] for c in record["callbacks"]] == [4]
    assert record["original_message_id"] == posted["d"]["id"]


async def test_a_second_callback_is_already_acknowledged(make_gateway: Factory, http):
    fg = await make_gateway()
    made = fg.dispatch("INTERACTION_CREATE", command="ping")
    body = {"type": 4, "data": {"content": "pong"}}
    assert (await call(http, fg, "POST", _callback(made), json=body)).status == 204
    again = await call(http, fg, "POST", _callback(made), json=body)
    assert (again.status, again.body["code"]) == (400, 40060)
    assert len(fg.interactions()[0]["callbacks"]) == 1


async def test_a_callback_after_the_response_window_is_an_unknown_interaction(
    make_gateway: Factory, http
):
    clock = FakeClock()
    fg = await make_gateway(clock=clock, interaction_response_s=3.0)
    made = fg.dispatch("INTERACTION_CREATE", command="ping")
    await clock.advance(3.01)
    late = await call(http, fg, "POST", _callback(made), json={"type": 5})
    assert (late.status, late.body["code"]) == (404, 10062)
    assert fg.interactions()[0]["callbacks"] == []


async def test_a_callback_with_a_wrong_token_is_an_unknown_interaction(make_gateway, http):
    fg = await make_gateway()
    made = fg.dispatch("INTERACTION_CREATE", command="ping")
    wrong = f"/interactions/{made['interaction_id']}/not-the-token/callback"
    answer = await call(http, fg, "POST", wrong, json={"type": 5})
    assert (answer.status, answer.body["code"]) == (404, 10062)


async def test_deferred_response_then_edit_original_and_followup(make_gateway: Factory, http):
    fg = await make_gateway()
    client = await ready_client(http, fg)
    made = fg.dispatch("INTERACTION_CREATE", command="ping")
    early = await call(http, fg, "POST", _webhook(fg, made), json={"content": "too soon"})
    assert (early.status, early.body["code"]) == (404, 10015)
    assert (await call(http, fg, "POST", _callback(made), json={"type": 5})).status == 204
    original = _webhook(fg, made) + "/messages/@original"
    edited = await call(http, fg, "PATCH", original, json={"content": "pong"}, token=None)
    assert edited.status == 200 and edited.body["content"] == "pong"
    update = await client.recv_until(lambda m: m["t"] == "MESSAGE_UPDATE")
    assert update["d"]["content"] == "pong" and update["d"]["flags"] & 128 == 0
    followup = await call(http, fg, "POST", _webhook(fg, made), json={"content": "more"})
    assert followup.status == 200
    contents = [m["content"] for m in fg.messages(made["channel_id"])]
    assert contents == ["pong", "more"]
    assert fg.interactions()[0]["followups"] == [followup.body["id"]]

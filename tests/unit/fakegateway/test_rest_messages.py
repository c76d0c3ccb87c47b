"""Messages and reactions through the fake's REST side: stored, and dispatched to the
session that owns the channel's guild."""

from __future__ import annotations

import aiohttp

from fakegateway import FakeGateway
from tests.unit.fakegateway.client import ready_client
from tests.unit.fakegateway.conftest import Factory
from tests.unit.fakegateway.rest_helpers import CONTENT_INTENTS, call, guild_of_shard


async def _two_shards(make_gateway: Factory, http, **intents):
    fg = await make_gateway(shards=2, max_concurrency=2)
    a = await ready_client(http, fg, [0, 2], **intents)
    b = await ready_client(http, fg, [1, 2], **intents)
    return fg, a, b


async def test_sent_message_is_stored_and_reaches_only_the_owning_shard(make_gateway, http):
    fg, a, b = await _two_shards(make_gateway, http)
    channel = guild_of_shard(fg, 1, 2).text_channels[0]
    sent = await call(http, fg, "POST", f"/channels/{channel}/messages", json={"content": "hi"})
    assert sent.status == 200 and sent.headers["Content-Type"] == "application/json"
    assert sent.body["content"] == "hi" and sent.body["channel_id"] == str(channel)
    bot = fg.state.bot
    assert sent.body["author"]["id"] == str(bot.id) and sent.body["author"]["bot"] is True
    event = await b.recv_until(lambda m: m["t"] == "MESSAGE_CREATE")
    assert event["d"]["id"] == sent.body["id"] and event["d"]["content"] == "hi"
    assert fg.messages(channel) == [sent.body]
    assert not any(m["t"] == "MESSAGE_CREATE" for m in await _drain(a))


async def _drain(client) -> list[dict]:
    out = []
    try:
        while True:
            out.append(await client.recv(0.2))
    except TimeoutError:
        return out


async def test_reply_keeps_its_message_reference(fg: FakeGateway, http):
    channel = guild_of_shard(fg, 0, 1).text_channels[0]
    said = fg.dispatch("MESSAGE_CREATE", content="!ping", channel_id=channel)
    reply = {"content": "pong", "message_reference": {"message_id": said["message_id"]}}
    sent = await call(http, fg, "POST", f"/channels/{channel}/messages", json=reply)
    assert sent.body["message_reference"]["message_id"] == said["message_id"]
    stored = fg.messages(channel)
    assert [m["content"] for m in stored] == ["!ping", "pong"]
    assert stored[1]["message_reference"]["channel_id"] == str(channel)


async def test_user_content_reaches_the_bot_only_with_message_content_intent(
    make_gateway: Factory, http
):
    fg = await make_gateway(shards=2, max_concurrency=2)
    with_intent = await ready_client(http, fg, [0, 2], intents=CONTENT_INTENTS)
    without = await ready_client(http, fg, [1, 2])
    for shard, client, expected in ((0, with_intent, "!ping"), (1, without, "")):
        guild = guild_of_shard(fg, shard, 2)
        fg.dispatch("MESSAGE_CREATE", content="!ping", guild_id=guild.id)
        event = await client.recv_until(lambda m: m["t"] == "MESSAGE_CREATE")
        assert event["d"]["content"] == expected


async def test_the_bots_own_message_keeps_its_content_without_the_intent(fg: FakeGateway, http):
    client = await ready_client(http, fg)
    channel = guild_of_shard(fg, 0, 1).text_channels[0]
    await call(http, fg, "POST", f"/channels/{channel}/messages", json={"content": "mine"})
    event = await client.recv_until(lambda m: m["t"] == "MESSAGE_CREATE")
    assert event["d"]["content"] == "mine"


async def test_bad_message_requests_get_discords_errors(fg: FakeGateway, http):
    channel = guild_of_shard(fg, 0, 1).text_channels[0]
    path = f"/channels/{channel}/messages"
    empty = await call(http, fg, "POST", path, json={"content": ""})
    assert (empty.status, empty.body["code"]) == (400, 50006)
    long = await call(http, fg, "POST", path, json={"content": "x" * 2001})
    assert (long.status, long.body["code"]) == (400, 50035) and "content" in long.body["errors"]
    unknown = await call(http, fg, "POST", "/channels/42/messages", json={"content": "x"})
    assert unknown.status == 404 and unknown.body == {"message": "Unknown Channel", "code": 10003}
    broken = await call(http, fg, "POST", path, data=b"{not json")
    assert (broken.status, broken.body["code"]) == (400, 50109)
    anonymous = await call(http, fg, "POST", path, json={"content": "x"}, token=None)
    assert anonymous.status == 401
    assert fg.messages(channel) == []


async def test_edit_and_delete_dispatch_their_events(fg: FakeGateway, http):
    client = await ready_client(http, fg)
    channel = guild_of_shard(fg, 0, 1).text_channels[0]
    sent = await call(http, fg, "POST", f"/channels/{channel}/messages", json={"content": "a"})
    path = f"/channels/{channel}/messages/{sent.body['id']}"
    edited = await call(http, fg, "PATCH", path, json={"content": "b"})
    assert edited.body["content"] == "b" and edited.body["edited_timestamp"] is not None
    update = await client.recv_until(lambda m: m["t"] == "MESSAGE_UPDATE")
    assert update["d"]["content"] == "b"
    deleted = await call(http, fg, "DELETE", path)
    assert deleted.status == 204
    gone = await client.recv_until(lambda m: m["t"] == "MESSAGE_DELETE")
    assert gone["d"] == {
        "id": sent.body["id"],
        "channel_id": str(channel),
        "guild_id": str(guild_of_shard(fg, 0, 1).id),
    }
    assert fg.messages(channel) == []
    again = await call(http, fg, "DELETE", path)
    assert (again.status, again.body["code"]) == (404, 10008)


async def test_editing_a_users_message_is_forbidden(fg: FakeGateway, http):
    channel = guild_of_shard(fg, 0, 1).text_channels[0]
    said = fg.dispatch("MESSAGE_CREATE", content="hello", channel_id=channel)
    path = f"/channels/{channel}/messages/{said['message_id']}"
    answer = await call(http, fg, "PATCH", path, json={"content": "hijacked"})
    assert (answer.status, answer.body["code"]) == (403, 50005)


async def test_reactions_dispatch_add_and_remove(fg: FakeGateway, http):
    client = await ready_client(http, fg)
    channel = guild_of_shard(fg, 0, 1).text_channels[0]
    said = fg.dispatch("MESSAGE_CREATE", content="vote", channel_id=channel)
    path = f"/channels/{channel}/messages/{said['message_id']}/reactions/%F0%9F%91%8D/@me"
    assert (await call(http, fg, "PUT", path)).status == 204
    added = await client.recv_until(lambda m: m["t"] == "MESSAGE_REACTION_ADD")
    assert added["d"]["emoji"] == {"id": None, "name": "👍"}
    assert added["d"]["user_id"] == str(fg.state.bot.id)
    assert (await call(http, fg, "DELETE", path)).status == 204
    removed = await client.recv_until(lambda m: m["t"] == "MESSAGE_REACTION_REMOVE")
    assert removed["d"]["message_id"] == said["message_id"]


async def test_multipart_message_with_a_file_has_an_attachment(fg: FakeGateway, http):
    channel = guild_of_shard(fg, 0, 1).text_channels[0]
    form = aiohttp.FormData()
    form.add_field("payload_json", '{"content": "see file"}', content_type="application/json")
    form.add_field("files[0]", b"hello", filename="a.txt", content_type="text/plain")
    sent = await call(http, fg, "POST", f"/channels/{channel}/messages", data=form)
    assert sent.status == 200 and sent.body["content"] == "see file"
    assert [(a["filename"], a["size"]) for a in sent.body["attachments"]] == [("a.txt", 5)]


async def test_channel_history_is_newest_first_and_pages(fg: FakeGateway, http):
    channel = guild_of_shard(fg, 0, 1).text_channels[0]
    ids = [
        fg.dispatch("MESSAGE_CREATE", content=str(i), channel_id=channel)["message_id"]
        for i in range(5)
    ]
    path = f"/channels/{channel}/messages"
    assert [m["id"] for m in (await call(http, fg, "GET", path)).body] == ids[::-1]
    older = await call(http, fg, "GET", f"{path}?limit=2&before={ids[3]}")
    assert [m["id"] for m in older.body] == [ids[2], ids[1]]
    newer = await call(http, fg, "GET", f"{path}?limit=2&after={ids[0]}")
    assert [m["id"] for m in newer.body] == [ids[2], ids[1]]
    bad = await call(http, fg, "GET", f"{path}?limit=101")
    assert (bad.status, bad.body["code"]) == (400, 50035)

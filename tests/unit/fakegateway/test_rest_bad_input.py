"""Malformed requests to every REST route get a 4xx JSON error, never a 500."""

from __future__ import annotations

import pytest

from tests.unit.fakegateway.conftest import Factory
from tests.unit.fakegateway.rest_helpers import call, guild_of_shard

BODIES = [
    b"",
    b"[]",
    b'"text"',
    b"{not json",
    b'{"content": 5}',
    b'{"content": "x", "message_reference": 5}',
    b'{"content": "x", "message_reference": {"message_id": []}}',
    b'{"embeds": {}}',
    b'{"components": "x"}',
    b'{"type": "4"}',
    b'{"type": 4, "data": {"content": "a", "flags": "x"}}',
    b'{"type": 4, "data": []}',
    b'[{"name": 5}]',
    b"[5]",
]


@pytest.mark.parametrize("method_and_route", range(12))
async def test_no_malformed_body_makes_a_500(make_gateway: Factory, http, method_and_route):
    fg = await make_gateway()
    channel = guild_of_shard(fg, 0, 1).text_channels[0]
    made = fg.dispatch("INTERACTION_CREATE", command="ping")
    said = fg.dispatch("MESSAGE_CREATE", content="x", channel_id=channel)
    app = fg.state.bot.id
    routes = [
        ("POST", f"/channels/{channel}/messages"),
        ("PATCH", f"/channels/{channel}/messages/{said['message_id']}"),
        ("PUT", f"/applications/{app}/commands"),
        ("POST", f"/applications/{app}/commands"),
        ("PUT", f"/applications/{app}/guilds/{made['guild_id']}/commands"),
        ("POST", f"/interactions/{made['interaction_id']}/{made['token']}/callback"),
        ("POST", f"/webhooks/{app}/{made['token']}"),
        ("PATCH", f"/webhooks/{app}/{made['token']}/messages/@original"),
        ("POST", "/channels/x/messages"),
        ("GET", "/guilds/x/members/y"),
        ("PUT", f"/channels/{channel}/messages/x/reactions/%F0%9F%91%8D/@me"),
        ("POST", "/_fake/dispatch"),
    ]
    method, path = routes[method_and_route]
    for body in BODIES:
        answer = await call(
            http, fg, method, path, data=body, headers={"Content-Type": "application/json"}
        )
        assert 400 <= answer.status < 500 or answer.status in (200, 201, 204), (body, answer)
        if answer.status >= 400:
            assert isinstance(answer.body, dict), (body, answer)

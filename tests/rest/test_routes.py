"""Route templates: paths, owner keys by major parameters, interaction exemptions."""

from __future__ import annotations

import pytest

from workers.rest.routes import compile_route


def test_channel_routes_share_the_channels_owner_key() -> None:
    a = compile_route("post", "/channels/{channel_id}/messages", {"channel_id": 1})
    b = compile_route(
        "PUT",
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
        {"channel_id": 1, "message_id": 2, "emoji": "👍"},
    )
    assert a.owner_key == b.owner_key == "channel:1"
    assert a.method == "POST" and a.path == "/channels/1/messages"
    assert b.path == "/channels/1/messages/2/reactions/%F0%9F%91%8D/@me"
    assert not a.local and not a.exempt_global


def test_same_route_on_two_channels_has_two_keys() -> None:
    one = compile_route("POST", "/channels/{channel_id}/messages", {"channel_id": 1})
    two = compile_route("POST", "/channels/{channel_id}/messages", {"channel_id": 2})
    assert one.route_id != two.route_id and one.label == two.label


def test_guild_routes_key_on_the_guild() -> None:
    r = compile_route("GET", "/guilds/{guild_id}/members/{user_id}", {"guild_id": 5, "user_id": 6})
    assert r.owner_key == "guild:5"


def test_interaction_routes_are_local_and_exempt_from_the_global_limit() -> None:
    secret = "aW50ZXJhY3Rpb24tdG9rZW4tc2VjcmV0"
    cb = compile_route(
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        {"interaction_id": 9, "interaction_token": secret},
    )
    follow = compile_route(
        "POST",
        "/webhooks/{application_id}/{interaction_token}",
        {"application_id": 3, "interaction_token": secret},
    )
    for r in (cb, follow):
        assert r.local and r.exempt_global
        assert secret not in r.owner_key and secret not in r.label


def test_webhook_key_uses_id_and_a_digest_of_the_token() -> None:
    r = compile_route(
        "POST",
        "/webhooks/{webhook_id}/{webhook_token}",
        {"webhook_id": 7, "webhook_token": "s3cr3t"},
    )
    assert r.owner_key.startswith("webhook:7:") and "s3cr3t" not in r.owner_key
    assert not r.exempt_global


def test_routes_without_majors_share_one_key() -> None:
    assert compile_route("GET", "/users/{user_id}", {"user_id": 1}).owner_key == "-"


@pytest.mark.parametrize(
    ("template", "params", "message"),
    [
        ("/channels/{channel_id}", {}, "needs parameter"),
        ("/channels/{channel_id}", {"channel_id": 1, "guild_id": 2}, "has no parameter"),
        ("channels", {}, "must start with '/'"),
    ],
)
def test_bad_templates_fail_before_sending(
    template: str, params: dict[str, str | int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compile_route("GET", template, params)


def test_parameters_are_quoted_so_they_cannot_change_the_path() -> None:
    r = compile_route("GET", "/users/{user_id}", {"user_id": "../gateway"})
    assert r.path == "/users/..%2Fgateway"

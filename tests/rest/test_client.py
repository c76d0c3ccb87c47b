"""The REST client against a Discord-shaped server: limits, retries, errors, secrecy."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest

from tests.rest.conftest import InstantClock, MakeClient
from tests.rest.discord_server import MESSAGE_BUCKET, TOKEN, Canned, DiscordServer
from workers import redact
from workers.clock import REAL_CLOCK
from workers.rest import errors
from workers.rest.buckets import RATE_LIMIT_RETRIES, SERVER_RETRIES
from workers.rest.files import File
from workers.rest.limiter import LocalCoordinator

MESSAGES = "/channels/{channel_id}/messages"


def rate_limited(scope: str, retry_after: float = 0.05) -> Canned:
    headers = {"X-RateLimit-Scope": scope, "Retry-After": "1", "Content-Type": "application/json"}
    if scope == "global":
        headers["X-RateLimit-Global"] = "true"
    body = msgspec.json.encode(
        {"message": "slow down", "retry_after": retry_after, "global": scope == "global"}
    )
    return Canned(429, body, headers)


async def test_request_sends_json_auth_and_reason_and_returns_decoded_json(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    rest = await make_client()
    msg = await rest.request(
        "POST", MESSAGES, channel_id=42, json={"content": "hi"}, reason="tidy up ✓"
    )
    assert msg["content"] == "hi" and msg["channel_id"] == "42"
    sent = discord.seen_headers[-1]
    assert sent["Authorization"] == f"Bot {TOKEN}"
    assert sent["User-Agent"].startswith("DiscordBot (")
    assert sent["Content-Type"] == "application/json"
    assert sent["X-Audit-Log-Reason"] == "tidy up %E2%9C%93"


async def test_query_and_multipart_files_are_sent(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    rest = await make_client()
    discord.script["POST /channels/1/messages"].append(Canned(200, b'{"id": "5"}'))
    await rest.request(
        "POST",
        MESSAGES,
        channel_id=1,
        json={"content": "file"},
        files=[File("a.txt", b"hello", "text/plain")],
        query={"wait": True},
    )
    assert discord.seen_headers[-1]["Content-Type"].startswith("multipart/form-data")
    body = discord.seen_bodies[-1]
    assert b'name="payload_json"' in body and b'filename="a.txt"' in body and b"hello" in body


async def test_remaining_and_reset_are_respected_before_sending(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    discord.bucket_size, discord.bucket_window_s = 2, 0.3
    rest = await make_client()
    for i in range(6):
        await rest.request("POST", MESSAGES, channel_id=7, json={"content": str(i)})
    assert discord.counters["limit_violations"] == 0
    assert discord.counters["rate_limited"] == 0
    assert [m["content"] for m in discord.messages["7"]] == [str(i) for i in range(6)]
    assert rest.stats.waits >= 2


async def test_unknown_bucket_gets_one_request_at_a_time_and_order_is_kept(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    discord.delay_s = 0.02
    rest = await make_client()
    await asyncio.gather(
        *(rest.request("POST", MESSAGES, channel_id=3, json={"content": str(i)}) for i in range(4))
    )
    assert discord.max_inflight == 1
    assert [m["content"] for m in discord.messages["3"]] == ["0", "1", "2", "3"]


async def test_bucket_id_from_headers_is_learned(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    rest = await make_client()
    await rest.request("POST", MESSAGES, channel_id=8, json={"content": "x"})
    key = rest._keys["channel:8"]
    assert list(key.routes.values()) == [MESSAGE_BUCKET]
    assert key.buckets[MESSAGE_BUCKET].remaining == discord.bucket_size - 1


@pytest.mark.parametrize("scope", ["user", "global", "shared"])
async def test_429_is_retried_after_retry_after_and_counted_by_scope(
    discord: DiscordServer, make_client: MakeClient, scope: str
) -> None:
    rest = await make_client()
    discord.script["GET /users/@me"].append(rate_limited(scope))
    me = await rest.request("GET", "/users/@me")
    assert me["id"] == "1"
    assert rest.stats.rate_limited == {scope: 1}
    # shared-scope 429s do not count toward Cloudflare's invalid-request limit
    assert rest.invalid.count(rest._clock.monotonic()) == (0 if scope == "shared" else 1)


async def test_429_after_every_retry_raises_rate_limited(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    rest = await make_client()
    discord.script["GET /users/@me"].extend(
        rate_limited("user", 0.01) for _ in range(RATE_LIMIT_RETRIES + 1)
    )
    with pytest.raises(errors.RateLimited) as caught:
        await rest.request("GET", "/users/@me")
    assert caught.value.scope == "user" and caught.value.status == 429


async def test_5xx_is_retried_with_capped_backoff(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    clock = InstantClock()
    rest = await make_client(clock=clock)
    discord.script["GET /users/@me"].extend([Canned(502, b"<html>bad gateway</html>")] * 2)
    assert (await rest.request("GET", "/users/@me"))["id"] == "1"
    assert clock.slept[-2:] == [0.5, 1.0]


async def test_5xx_every_time_raises_server_error(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    rest = await make_client(clock=InstantClock())
    discord.script["GET /users/@me"].extend(
        [Canned(500, b'{"message": "oops", "code": 0}')] * (SERVER_RETRIES + 1)
    )
    with pytest.raises(errors.ServerError, match="oops"):
        await rest.request("GET", "/users/@me")
    assert discord.counters["requests"] == SERVER_RETRIES + 1


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, errors.BadRequest), (403, errors.Forbidden), (404, errors.NotFound)],
)
async def test_client_errors_raise_typed_errors_with_discords_code_and_message(
    discord: DiscordServer, make_client: MakeClient, status: int, cls: type[errors.HTTPError]
) -> None:
    rest = await make_client()
    discord.script["GET /users/@me"].append(
        Canned(status, b'{"message": "Missing Access", "code": 50001}')
    )
    with pytest.raises(cls) as caught:
        await rest.request("GET", "/users/@me")
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        status,
        50001,
        "Missing Access",
    )
    assert discord.counters["requests"] == 1  # never retried


async def test_unknown_route_is_not_found(make_client: MakeClient) -> None:
    rest = await make_client()
    with pytest.raises(errors.NotFound):
        await rest.request("GET", "/nothing/{guild_id}", guild_id=1)


async def test_malformed_success_body_raises_malformed_response(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    rest = await make_client()
    discord.script["GET /users/@me"].append(Canned(200, b"{not json"))
    with pytest.raises(errors.MalformedResponse):
        await rest.request("GET", "/users/@me")


async def test_non_json_error_body_still_gives_a_typed_error(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    rest = await make_client()
    discord.script["GET /users/@me"].append(Canned(403, b"<html>error 1015</html>"))
    with pytest.raises(errors.Forbidden, match="non-JSON error body"):
        await rest.request("GET", "/users/@me")


async def test_invalid_request_guard_refuses_before_the_limit(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    rest = await make_client(token="NDU2.wrong.token", invalid_limit=2)
    for _ in range(2):
        with pytest.raises(errors.Unauthorized):
            await rest.request("GET", "/users/@me")
    with pytest.raises(errors.InvalidRequestLimit, match="401/403/429"):
        await rest.request("GET", "/users/@me")
    assert discord.counters["requests"] == 2
    rest.flush_stats()


async def test_token_never_appears_in_errors_logs_or_stats(
    discord: DiscordServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    redact.add_secret(TOKEN)
    caplog.set_level(logging.DEBUG)
    rest = await make_client()
    echo = msgspec.json.encode({"message": f"bad token {TOKEN}", "code": 0})
    discord.script["GET /users/@me"].extend([rate_limited("user", 0.01), Canned(401, echo)])
    with pytest.raises(errors.Unauthorized) as caught:
        await rest.request("GET", "/users/@me")
    stats = rest.stats.take(1, 0)
    assert TOKEN not in str(caught.value) and TOKEN not in caught.value.message
    assert TOKEN not in caplog.text
    assert TOKEN not in str(msgspec.json.encode(stats))


async def test_interaction_callback_skips_the_global_limit(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    rest = await make_client(global_limit=1)
    await rest.request("GET", "/users/@me")  # spends the only token of this second
    started = rest._clock.monotonic()
    await rest.request(
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        interaction_id=1,
        interaction_token="tok",
        json={"type": 4, "data": {"content": "pong"}},
    )
    assert rest._clock.monotonic() - started < 0.5


async def test_a_token_whose_lease_ran_out_is_not_used(
    discord: DiscordServer, make_client: MakeClient
) -> None:
    class LateGrants(LocalCoordinator):
        asks = 0

        def try_take_global(self, want: int) -> tuple[int, float] | None:
            return None

        async def take_global(self, want: int) -> tuple[int, float]:
            self.asks += 1
            now = REAL_CLOCK.monotonic()
            # the first grant arrives after its lease (a busy pipe): void
            return want, (now - 1.0 if self.asks == 1 else now + 60.0)

    coordinator = LateGrants(50)
    rest = await make_client(coordinator)
    await rest.request("GET", "/users/@me")
    assert coordinator.asks == 2
    assert discord.counters["requests"] == 1

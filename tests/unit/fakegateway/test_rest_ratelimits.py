"""Discord's REST rate limits as the fake enforces them, on an injected clock: headers on
every answer, a per-channel message bucket, the global limit, and the ground truth."""

from __future__ import annotations

import pytest

from tests.unit.fakegateway.conftest import Factory
from tests.unit.fakegateway.rest_helpers import call, guild_of_shard
from workers.clock import FakeClock

LIMIT_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-After",
    "X-RateLimit-Bucket",
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def _send(http, fg, channel: int, text: str = "x"):
    return await call(http, fg, "POST", f"/channels/{channel}/messages", json={"content": text})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/gateway/bot"),
        ("GET", "/users/@me"),
        ("GET", "/applications/@me"),
        ("GET", "/nothing/here"),
        ("GET", "/channels/42"),
    ],
)
async def test_every_answer_carries_the_rate_limit_headers(
    make_gateway: Factory, http, method, path
):
    fg = await make_gateway()
    answer = await call(http, fg, method, path)
    assert all(h in answer.headers for h in LIMIT_HEADERS), answer.headers
    assert "X-RateLimit-Scope" not in answer.headers


async def test_message_bucket_counts_down_per_channel(make_gateway: Factory, http, clock):
    fg = await make_gateway(clock=clock)
    one, two = guild_of_shard(fg, 0, 1).text_channels[:2]
    first = await _send(http, fg, one)
    second = await _send(http, fg, one)
    other = await _send(http, fg, two)
    assert first.headers["X-RateLimit-Limit"] == "5"
    assert [first.headers["X-RateLimit-Remaining"], second.headers["X-RateLimit-Remaining"]] == [
        "4",
        "3",
    ]
    # The same route's bucket, split by its channel.
    assert other.headers["X-RateLimit-Remaining"] == "4"
    assert first.headers["X-RateLimit-Bucket"] == other.headers["X-RateLimit-Bucket"]
    assert float(first.headers["X-RateLimit-Reset-After"]) == pytest.approx(5.0)
    reset = float(first.headers["X-RateLimit-Reset"]) - fg.state.epoch()
    assert reset == pytest.approx(5.0, abs=0.01)


async def test_sending_faster_than_the_bucket_gets_429_and_counts_a_violation(
    make_gateway: Factory, http, clock
):
    fg = await make_gateway(clock=clock, rest_message_bucket=(2, 1.0))
    channel = guild_of_shard(fg, 0, 1).text_channels[0]
    assert [(await _send(http, fg, channel)).status for _ in range(2)] == [200, 200]
    await clock.advance(0.25)
    limited = await _send(http, fg, channel, "third")
    assert limited.status == 429
    assert limited.body["global"] is False
    assert limited.body["retry_after"] == pytest.approx(0.75)
    assert limited.headers["X-RateLimit-Scope"] == "user"
    assert limited.headers["Retry-After"] == "1"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Global" not in limited.headers
    truth = fg.rest_stats()
    assert truth["limit_violations"] == 1 and truth["rate_limited"] == 1
    assert truth["invalid_requests"] == 1 and truth["global_violations"] == 0
    assert [m["content"] for m in fg.messages(channel)] == ["x", "x"]
    await clock.advance(0.75)
    assert (await _send(http, fg, channel, "later")).status == 200


async def test_the_global_limit_spans_routes(make_gateway: Factory, http, clock):
    fg = await make_gateway(clock=clock, rest_global_limit=3)
    channels = guild_of_shard(fg, 0, 1).text_channels
    answers = [await _send(http, fg, channels[i % len(channels)]) for i in range(2)]
    answers.append(await call(http, fg, "GET", "/users/@me"))
    answers.append(await call(http, fg, "GET", "/gateway/bot"))
    assert [a.status for a in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.body["global"] is True
    assert limited.headers["X-RateLimit-Global"] == "true"
    assert limited.headers["X-RateLimit-Scope"] == "global"
    truth = fg.rest_stats()
    assert truth["global_violations"] == 1 and truth["limit_violations"] == 0
    await clock.advance(1.0)
    assert (await call(http, fg, "GET", "/gateway/bot")).status == 200


async def test_interaction_callbacks_are_not_under_the_global_limit(
    make_gateway: Factory, http, clock
):
    fg = await make_gateway(clock=clock, rest_global_limit=1)
    assert (await call(http, fg, "GET", "/users/@me")).status == 200
    made = fg.dispatch("INTERACTION_CREATE", command="ping")
    path = f"/interactions/{made['interaction_id']}/{made['token']}/callback"
    answer = await call(http, fg, "POST", path, json={"type": 4, "data": {"content": "pong"}})
    assert answer.status == 204
    assert (await call(http, fg, "GET", "/users/@me")).status == 429


async def test_ground_truth_counts_requests_by_route_template(make_gateway: Factory, http):
    fg = await make_gateway()
    channel = guild_of_shard(fg, 0, 1).text_channels[0]
    await _send(http, fg, channel)
    await _send(http, fg, channel)
    await call(http, fg, "GET", "/gateway/bot")
    await call(http, fg, "GET", "/gateway/bot", token=None)
    truth = await call(http, fg, "GET", "/_fake/rest")
    assert truth.body == fg.rest_stats()
    assert truth.body["requests"] == 4
    assert truth.body["by_route"] == {
        "POST /channels/{channel_id}/messages": 2,
        "GET /gateway/bot": 2,
    }
    assert truth.body["invalid_requests"] == 1
    assert truth.body["rate_limited"] == 0

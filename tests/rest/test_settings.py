"""The REST settings: defaults, validation, and which limiter they pick."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from shardmgr.config import Settings, load_settings, validate
from shardmgr.errors import UserError
from shardmgr.restlimits import LocalGlobal, make_broker
from tests.rest.discord_server import TOKEN
from workers.clock import REAL_CLOCK


def test_rest_defaults_are_discords_global_limit_and_a_margin_below_the_ban() -> None:
    s = load_settings({}, env={})
    assert (s.rest_global_limit, s.rest_limiter, s.rest_invalid_limit) == (50, None, 8000)


def test_rest_settings_come_from_the_environment() -> None:
    s = load_settings({}, env={"SHARDMGR_REST_GLOBAL_LIMIT": "500"})
    assert s.rest_global_limit == 500


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rest_global_limit", 0, "at least 1"),
        ("rest_invalid_limit", 10_000, "1 to 9500"),
        ("rest_limiter", "http://x", "redis:// URL"),
    ],
)
def test_bad_rest_settings_are_one_clear_line(field: str, value: object, message: str) -> None:
    s = msgspec.structs.replace(Settings(), **{field: value})
    with pytest.raises(UserError, match=message):
        validate(s)


async def test_broker_follows_the_identify_limiter_unless_overridden() -> None:
    local = make_broker(Settings(rest_global_limit=7, api_base="http://127.0.0.1:1/api"), TOKEN)
    assert isinstance(local.source, LocalGlobal) and local.source.ledger.limit == 7
    assert local.api_base == "http://127.0.0.1:1/api"
    assert local.worker_invalid_limit(4) == 2000
    redis = make_broker(Settings(identify_limiter="redis://127.0.0.1:1/0"), TOKEN)
    assert type(redis.source).__name__ == "RedisRest"
    await redis.aclose()
    override = make_broker(
        Settings(identify_limiter="redis://127.0.0.1:1/0", rest_limiter="local"), TOKEN
    )
    assert isinstance(override.source, LocalGlobal)
    for broker in (local, override):
        await broker.aclose()


async def test_the_discovery_request_counts_against_the_global_limit() -> None:
    broker = make_broker(Settings(rest_global_limit=7), TOKEN)
    assert isinstance(broker.source, LocalGlobal)
    await asyncio.sleep(0)
    assert broker.source.ledger.available(REAL_CLOCK.monotonic()) == 6
    await broker.aclose()

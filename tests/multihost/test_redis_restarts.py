"""Redis restarts the identify limiter must notice: a restart from a snapshot keeps the epoch
but loses the newest leases; Redis' run_id tells, on every new connection."""

from __future__ import annotations

from typing import Any

import pytest

from shardmgr.identify import SessionStartLimit
from shardmgr.identify.redis import RedisIdentifyLimiter, grant_log
from shardmgr.identify.redisrestart import UNKNOWN, parse_info, restart_reason
from tests.multihost.redis_server import RedisServer

WINDOW_S = 0.3
WINDOW_MS = 300


@pytest.mark.parametrize(
    ("known", "run_id", "uptime_s", "reconnect", "reason"),
    [
        (None, "r1", 100.0, False, None),  # first look at an old server
        (None, "r1", 0.0, False, "young"),  # may have restarted just before we looked
        ("r1", "r1", 0.0, False, None),  # another connection to the same server
        ("r1", "r2", 100.0, False, "restarted"),  # restart or failover, however old
        ("r1", "r1", 100.0, True, "reconnected"),  # after an outage nobody knows
        (None, UNKNOWN, 100.0, False, "unknown"),  # INFO denied
        ("r1", UNKNOWN, 100.0, False, "unknown"),
    ],
)
def test_restart_reason(
    known: str | None, run_id: str, uptime_s: float, reconnect: bool, reason: str | None
) -> None:
    assert restart_reason(known, run_id, uptime_s, 1.0, reconnect) == reason


def test_info_is_read_from_raw_text_and_from_a_parsed_reply() -> None:
    raw = b"# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\nuptime_in_seconds:42\r\n"
    assert parse_info(raw) == ("abc", 42.0)
    assert parse_info({"run_id": "abc", "uptime_in_seconds": 42}) == ("abc", 42.0)
    assert parse_info(b"") == (UNKNOWN, 0.0)


def limits() -> SessionStartLimit:
    return SessionStartLimit(total=1000, remaining=1000, reset_after_s=3600, max_concurrency=1)


@pytest.mark.redis
@pytest.mark.timeout(60)
async def test_a_redis_restarted_from_a_snapshot_taken_mid_window_fences_every_bucket(
    redis_server: RedisServer, inspect: Any
) -> None:
    host_a = RedisIdentifyLimiter(redis_server.url, window_s=WINDOW_S, bot_id="1")
    host_b = RedisIdentifyLimiter(redis_server.url, window_s=WINDOW_S, bot_id="1")
    try:
        for host in (host_a, host_b):
            host.update(limits())
        # Both hosts know the epoch; host B's last grant is in the snapshot.
        await host_b.acquire(1)
        await host_b.sent(1)
        await inspect.save()
        await host_a.acquire(0)  # after the snapshot: this lease will be forgotten
        await host_a.sent(0)
        redis_server.restart()
        await inspect.connection_pool.disconnect()
        restarted_at_s, micros = await inspect.time()
        restarted_at = int(restarted_at_s) * 1000 + int(micros) // 1000
        assert await inspect.exists(f"{host_b.namespace}:epoch"), "the epoch survived"
        await host_b.acquire(2)  # same bucket as host A's forgotten grant
        granted_at, shard, _ = (await grant_log(inspect, host_b.namespace))[-1]
        assert shard == 2
        assert granted_at - restarted_at >= WINDOW_MS
    finally:
        await host_a.aclose()
        await host_b.aclose()


@pytest.mark.redis
@pytest.mark.timeout(60)
async def test_a_redis_younger_than_a_window_at_the_first_look_fences_every_bucket(
    redis_server: RedisServer, inspect: Any
) -> None:
    # Long enough that this Redis (started by the fixture just now) is younger than it.
    window_s = 3.0
    limiter = RedisIdentifyLimiter(redis_server.url, window_s=window_s, bot_id="1")
    try:
        limiter.update(limits())
        info = await inspect.info("server")
        assert info["uptime_in_seconds"] < window_s
        seconds, micros = await inspect.time()
        looked_at = int(seconds) * 1000 + int(micros) // 1000
        await limiter.acquire(0)
        [(granted_at, _, _)] = await grant_log(inspect, limiter.namespace)
        # it may have forgotten a lease given just before we looked
        assert granted_at - looked_at >= window_s * 1000
    finally:
        await limiter.aclose()

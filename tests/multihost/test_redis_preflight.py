"""Redis credentials are checked before the plan is printed: a wrong password is one line
and exit 2 within seconds, whether the URL came from a flag, a variable or a file; and the
supervisor's sink monitor tells whether events are being written."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from shardmgr.errors import UserError
from shardmgr.redisurl import check_redis, resolve_url_files
from shardmgr.sinks.monitor import SinkMonitor
from shardmgr.sinks.stream_script import full_key
from tests.multihost.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GAbcde.secretsecretsecretsecretsecret"
PASSWORD = "right-password"


@pytest.fixture
async def guarded(redis_server: RedisServer) -> RedisServer:
    client = aioredis.from_url(redis_server.url)
    await client.config_set("requirepass", PASSWORD)
    await client.aclose()
    return redis_server


def start(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "shardmgr", "start", "--http", "127.0.0.1:0", *args],
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "DISCORD_TOKEN": TOKEN,
            "SHARDMGR_STATE_DIR": str(tmp_path / "state"),
            # Never reached: the check comes before discovery.
            "SHARDMGR_API_BASE": "http://127.0.0.1:9/api/v10",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done, time.monotonic() - began


def test_a_wrong_sink_password_in_a_file_fails_the_start_with_one_line_and_exit_2(
    guarded: RedisServer, tmp_path: Path
) -> None:
    url_file = tmp_path / "sink-url"
    url_file.write_text(f"redis-stream://:wrong-one@127.0.0.1:{guarded.port}/0?stream=e\n")
    done, took = start(tmp_path, "--sink-file", str(url_file))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--sink" in lines[0] and "refused the credentials" in lines[0]
    assert "wrong-one" not in done.stderr + done.stdout
    assert took < 15


def test_a_wrong_limiter_password_from_the_environment_fails_the_start(
    guarded: RedisServer, tmp_path: Path
) -> None:
    url = f"redis://:wrong-one@127.0.0.1:{guarded.port}/0"
    done, _ = start(tmp_path, SHARDMGR_IDENTIFY_LIMITER=url)
    assert done.returncode == 2, done.stderr
    assert "--identify-limiter" in done.stderr and "refused the credentials" in done.stderr
    assert "wrong-one" not in done.stderr + done.stdout


async def test_the_right_password_passes_and_an_unreachable_redis_is_only_logged(
    guarded: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    await check_redis(f"redis://:{PASSWORD}@127.0.0.1:{guarded.port}/0", "--sink")
    guarded.stop()
    await check_redis(f"redis://:{PASSWORD}@127.0.0.1:{guarded.port}/0", "--sink", 1.0)
    assert "cannot reach redis at start" in caplog.text


async def test_a_missing_tls_file_is_a_one_line_error(redis_server: RedisServer) -> None:
    with pytest.raises(UserError, match=r"ssl_ca_certs=/nonexistent/ca\.pem does not exist"):
        await check_redis(f"{redis_server.url}?ssl_ca_certs=/nonexistent/ca.pem", "--sink")


def test_a_url_file_replaces_its_setting_and_both_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "limiter"
    path.write_text("redis://:pw@10.0.0.1:6379/0\n")
    urls = resolve_url_files(
        identify_limiter="local", identify_limiter_file=str(path), sink=None, sink_file=None
    )
    assert urls.identify_limiter == "redis://:pw@10.0.0.1:6379/0"
    with pytest.raises(UserError, match="either --sink or --sink-file"):
        resolve_url_files(
            identify_limiter="local", identify_limiter_file=None, sink="x", sink_file=str(path)
        )


class Recorder:
    def __init__(self) -> None:
        self.state: tuple[bool, bool] | None = None
        self.stream: tuple[int, dict[str, tuple[float, int]]] | None = None

    def sink_state(self, available: bool, backpressure: bool) -> None:
        self.state = (available, backpressure)

    def sink_stream(self, length: int, groups: dict[str, tuple[float, int]]) -> None:
        self.stream = (length, groups)


async def test_the_monitor_reports_lag_backpressure_and_an_unreachable_redis(
    redis_server: RedisServer,
) -> None:
    client: Any = aioredis.from_url(redis_server.url)
    for n in range(5):
        await client.xadd("ev", {"n": n})
    await client.xgroup_create("ev", "bot", id="0")
    await client.xreadgroup("bot", "c", {"ev": ">"}, count=2)
    recorder = Recorder()
    url = f"redis-stream://127.0.0.1:{redis_server.port}/0?stream=ev"
    monitor = SinkMonitor(url, recorder, socket_timeout_s=1.0)
    try:
        await monitor.poll()
        assert recorder.state == (True, False) and monitor.writing
        assert recorder.stream == (5, {"bot": (3.0, 2)})
        await client.set(full_key("ev"), "bot", px=10_000)
        await monitor.poll()
        assert recorder.state == (True, True) and not monitor.writing
        assert "'bot'" in monitor.why_not_writing()
        await client.aclose()
        redis_server.stop()
        await monitor.poll()
        assert recorder.state is not None and not recorder.state[0]
        assert "cannot be reached" in monitor.why_not_writing()
    finally:
        await monitor.aclose()

"""``fakegateway.spawn``: the one way tests, benchmarks and the demo run the fake as a child."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from fakegateway import FakeConfig, FakeStartError, make_token, spawn, spawn_async

TOKEN = make_token(1100000000000000042)


def _gateway_bot(api_base: str, token: str) -> dict[str, object]:
    request = urllib.request.Request(
        api_base + "/gateway/bot", headers={"Authorization": f"Bot {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        doc: dict[str, object] = json.loads(resp.read())
        return doc


def test_spawn_serves_the_config_and_stops_with_status_0():
    fake = spawn(FakeConfig(shards=3, max_concurrency=2, token=TOKEN))
    try:
        assert fake.url == f"http://127.0.0.1:{fake.port}"
        assert fake.api_base == fake.url + "/api/v10"
        body = _gateway_bot(fake.api_base, TOKEN)
        assert body["shards"] == 3
        assert body["url"] == fake.gateway_url
        assert fake.get_json("/_fake/config")["max_concurrency"] == 2
    finally:
        assert fake.stop() == 0


def test_spawned_token_is_in_the_environment_not_on_the_command_line():
    with spawn(FakeConfig(token=TOKEN)) as fake:
        cmdline = Path(f"/proc/{fake.pid}/cmdline").read_bytes()
        assert TOKEN.encode() not in cmdline
        environ = Path(f"/proc/{fake.pid}/environ").read_bytes()
        assert b"SHARDMGR_FAKE_TOKEN=" + TOKEN.encode() in environ.split(b"\0")


def test_spawn_without_a_token_ignores_one_in_the_parent_environment(monkeypatch):
    monkeypatch.setenv("SHARDMGR_FAKE_TOKEN", TOKEN)
    other = make_token(1100000000000000077)
    with spawn(FakeConfig()) as fake:
        assert _gateway_bot(fake.api_base, other)["shards"] == 1


def test_spawn_on_a_busy_port_raises_with_the_exit_status():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(FakeStartError, match="exited with 2"):
            spawn(FakeConfig(port=port), stderr=subprocess.DEVNULL)


def test_spawn_appends_raw_flags_after_the_generated_ones():
    with spawn(FakeConfig(shards=3), args=["--shards", "5"]) as fake:
        assert fake.get_json("/_fake/config")["shards"] == 5


async def test_spawn_async_serves_and_stops_without_blocking():
    async with await spawn_async(FakeConfig(shards=2, token=TOKEN)) as fake:
        assert fake.get_json("/_fake/config")["shards"] == 2
    assert fake.returncode == 0


def test_the_child_runs_this_checkouts_code_from_any_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with spawn(FakeConfig(shards=2), env=env, cwd=tmp_path) as fake:
        assert fake.get_json("/_fake/config")["shards"] == 2

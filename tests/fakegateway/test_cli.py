"""``shardmgr fake-gateway`` as a process: URL on stdout, serves, exits 0 on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import signal
import socket
import sys

import aiohttp
import pytest

from shardmgr.errors import UserError
from shardmgr.fakegateway import FakeConfig
from shardmgr.fakegateway import cli as fake_cli
from tests.fakegateway.client import TOKEN


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shardmgr",
        "fake-gateway",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_cli_prints_url_serves_and_exits_0_on_sigterm():
    proc = await _spawn("--port", "0", "--shards", "3", "--max-concurrency", "2")
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        assert line.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bot {TOKEN}"}
            async with http.get(f"{line}/api/v10/gateway/bot", headers=headers) as r:
                body = await r.json()
            assert body["shards"] == 3
            assert body["session_start_limit"]["max_concurrency"] == 2
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_port_in_use_is_a_one_line_error_exit_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await _spawn("--port", str(port))
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "--port" in lines[0]


async def test_cli_bad_option_value_is_a_one_line_error_exit_2():
    proc = await _spawn("--shards", "0")
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    text = err.decode().strip()
    assert "shards must be at least 1" in text and len(text.splitlines()) == 1


def test_every_config_field_has_a_cli_option():
    parser = argparse.ArgumentParser()
    fake_cli.add_arguments(parser)
    config = fake_cli.config_from_args(parser.parse_args([]))
    assert config == FakeConfig()
    changed = fake_cli.config_from_args(
        parser.parse_args(
            [
                "--session-ttl",
                "7",
                "--expired-resume-code",
                "0",
                "--violation-is-free",
                "--privileged-intents",
                "GUILD_MEMBERS",
            ]
        )
    )
    assert changed.session_ttl_s == 7 and changed.expired_resume_close_code is None
    assert changed.violation_consumes_start is False and changed.privileged_intents == 2
    fields = {f.name for f in dataclasses.fields(FakeConfig)}
    help_text = parser.format_help()
    # Each field is reachable: either named in config_from_args or it is the bot identity.
    source = inspect.getsource(fake_cli.config_from_args)
    assert all(f'"{name}"' in source for name in fields), fields
    assert "--session-start-total" in help_text


def test_bad_option_becomes_user_error():
    parser = argparse.ArgumentParser()
    fake_cli.add_arguments(parser)
    with pytest.raises(UserError, match="close_timeout_s"):
        fake_cli.config_from_args(parser.parse_args(["--close-timeout", "0"]))

"""``shardmgr fake-gateway`` as a process: URL on stdout, serves, exits 0 on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from fakegateway import FakeConfig, make_token
from fakegateway import cli as fake_cli
from shardmgr.errors import UserError
from shardmgr.fakegateway import cli as shardmgr_fake_cli
from tests.unit.fakegateway.client import TOKEN


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


def _parse(*argv: str) -> FakeConfig:
    return fake_cli.config_from_args(fake_cli.build_parser().parse_args(argv))


def test_no_flags_give_the_default_config():
    assert _parse() == FakeConfig()


# Every flag documented before the command line was generated, and the field it sets.
OLD_FLAGS = [
    (["--host", "127.0.0.2"], "host", "127.0.0.2"),
    (["--port", "8989"], "port", 8989),
    (["--bot-id", "1100000000000000009"], "bot_id", 1100000000000000009),
    (["--shards", "4"], "shards", 4),
    (["--max-concurrency", "2"], "max_concurrency", 2),
    (["--identify-window", "0.2"], "identify_window_s", 0.2),
    (["--heartbeat-interval", "0.5"], "heartbeat_interval_s", 0.5),
    (["--heartbeat-timeout-slack", "1"], "heartbeat_timeout_slack", 1.0),
    (["--heartbeat-timeout-code", "4009"], "heartbeat_timeout_code", 4009),
    (["--guilds", "7"], "guilds", 7),
    (["--unavailable-fraction", "0.5"], "unavailable_fraction", 0.5),
    (["--event-rate", "20"], "event_rate", 20.0),
    (["--seed", "3"], "seed", 3),
    (["--chaos", "42"], "chaos_seed", 42),
    (["--chaos-interval", "2"], "chaos_interval_s", 2.0),
    (["--session-ttl", "7"], "session_ttl_s", 7.0),
    (["--session-start-total", "50"], "session_start_total", 50),
    (["--session-start-remaining", "5"], "session_start_remaining", 5),
    (["--reset-after", "60"], "reset_after_s", 60.0),
    (["--max-guilds-per-shard", "10"], "max_guilds_per_shard", 10),
    (["--privileged-intents", "GUILD_MEMBERS"], "privileged_intents", 2),
    (["--privileged-intents", "0"], "privileged_intents", 0),
    (["--identify-violation-delay", "0.05"], "invalid_session_delay_s", 0.05),
    (["--no-token-reset"], "token_reset_on_exhaustion", False),
    (["--replay-buffer", "10"], "replay_buffer", 10),
    (["--large-bot-multiple", "16"], "large_bot_multiple", 16),
    (["--zlib-chunk-bytes", "64"], "zlib_chunk_bytes", 64),
    (["--reject-resume-on-main-url"], "reject_resume_on_main_url", True),
    (["--bot-name", "Pinger"], "bot_name", "Pinger"),
    (["--violation-is-free"], "violation_consumes_start", False),
    (["--expired-resume-code", "4000"], "expired_resume_close_code", 4000),
    (["--expired-resume-code", "0"], "expired_resume_close_code", None),
    (["--payload-compress-threshold", "200"], "payload_compress_threshold", 200),
    (["--reconnect-close-after", "0.3"], "reconnect_close_after_s", 0.3),
    (["--request-members-window", "1"], "request_members_window_s", 1.0),
    (["--close-timeout", "1"], "close_timeout_s", 1.0),
    (["--rest-global-limit", "20"], "rest_global_limit", 20),
    (["--rest-message-bucket", "3/0.5"], "rest_message_bucket", (3, 0.5)),
]


@pytest.mark.parametrize(("argv", "field", "value"), OLD_FLAGS)
def test_each_documented_flag_still_sets_its_field(argv, field, value):
    assert getattr(_parse(*argv), field) == value


def test_every_config_field_has_a_generated_flag():
    help_text = fake_cli.build_parser().format_help()
    for field in dataclasses.fields(FakeConfig):
        assert fake_cli.flag(field.name) in help_text, field.name


# A config with every field away from its default (the token travels in the environment).
EVERYTHING_CHANGED = FakeConfig(
    host="127.0.0.2",
    port=8989,
    bot_id=1100000000000000009,
    bot_name="Pinger",
    shards=4,
    max_concurrency=2,
    identify_window_s=0.2,
    heartbeat_interval_s=0.5,
    heartbeat_timeout_slack=1.5,
    heartbeat_timeout_code=4009,
    guilds=7,
    unavailable_fraction=0.25,
    event_rate=20.5,
    seed=3,
    chaos_seed=42,
    chaos_interval_s=2.0,
    session_ttl_s=7.0,
    session_start_total=50,
    session_start_remaining=5,
    reset_after_s=60.0,
    max_guilds_per_shard=10,
    privileged_intents=2,
    invalid_session_delay_s=0.05,
    violation_consumes_start=False,
    token_reset_on_exhaustion=False,
    replay_buffer=10,
    large_bot_multiple=2,
    expired_resume_close_code=None,
    reject_resume_on_main_url=True,
    zlib_chunk_bytes=64,
    payload_compress_threshold=200,
    reconnect_close_after_s=0.3,
    request_members_window_s=1.0,
    close_timeout_s=1.0,
    rest_global_limit=20,
    rest_message_bucket=(3, 0.5),
    rest_route_bucket=(9, 2.0),
    interaction_response_s=0.5,
    interaction_token_ttl_s=60.0,
)


def test_to_argv_is_the_inverse_of_the_command_line():
    changed = {
        f.name
        for f in dataclasses.fields(FakeConfig)
        if getattr(EVERYTHING_CHANGED, f.name) != getattr(FakeConfig(), f.name)
    }
    assert changed == {f.name for f in dataclasses.fields(FakeConfig)} - {"token"}
    assert _parse(*fake_cli.to_argv(EVERYTHING_CHANGED)) == EVERYTHING_CHANGED


def test_to_argv_never_carries_the_token():
    token = make_token(1100000000000000009)
    assert token not in " ".join(fake_cli.to_argv(FakeConfig(token=token)))


def test_token_comes_from_the_environment_when_no_flag(monkeypatch):
    token = make_token(1100000000000000009)
    monkeypatch.setenv(fake_cli.TOKEN_ENV, token)
    assert _parse().token == token


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--close-timeout", "0"], "close_timeout_s must be positive"),
        (["--rest-message-bucket", "5"], "is not N/S"),
        (["--shards", "many"], "'many' is not a valid value"),
        (["--privileged-intents", "NOPE"], "unknown intent"),
    ],
)
def test_bad_value_is_a_one_line_usage_error(argv, expected):
    with pytest.raises(fake_cli.UsageError, match=expected) as caught:
        _parse(*argv)
    assert "\n" not in str(caught.value)


def test_shardmgr_reports_a_fake_usage_error_as_its_own():
    parser = argparse.ArgumentParser()
    shardmgr_fake_cli.add_arguments(parser)
    with pytest.raises(UserError, match="close_timeout_s"):
        shardmgr_fake_cli.run(parser.parse_args(["--close-timeout", "0"]))


def test_the_readme_names_a_flag_for_every_field():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme[readme.index("<!-- section: fake-gateway -->") :]
    for field in dataclasses.fields(FakeConfig):
        names = {
            fake_cli.flag(field.name),
            *fake_cli.ALIASES.get(field.name, ()),
            fake_cli.OFF_SWITCHES.get(field.name, fake_cli.flag(field.name)),
        }
        assert any(f"`{n}" in section for n in names), field.name

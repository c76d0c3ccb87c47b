"""Hostile or mistaken user input to ``shardmgr start``: each mistake gets one line that
names what to fix, exit status 2, no traceback, and nothing left running or half-written."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.procs import (
    SECRET_TOKEN,
    base_env,
    fake_gateway,
    free_port,
    kill_marked,
    marked_pids,
    new_marker,
    run_cli,
)

# A Spacebar-style bot token: a JWT, not Discord's id.timestamp.hmac shape.
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6IjEyMzQ1Njc4OTAxMjM0NTY3OCJ9."
    "c2lnbmF0dXJlLW9mLXRoZS1zcGFjZWJhci1zZXJ2ZXI"
)


@pytest.fixture
def marker() -> Iterator[str]:
    value = new_marker()
    yield value
    kill_marked(value)


def assert_user_error(
    args: list[str],
    *,
    must_mention: str,
    cwd: Path,
    marker: str,
    env: dict[str, str] | None = None,
) -> None:
    state = cwd / "state"
    env = env if env is not None else base_env(marker, DISCORD_TOKEN=SECRET_TOKEN)
    result = run_cli(["start", "--state-dir", str(state), *args], env, cwd)
    lines = result.stderr.strip().splitlines()
    assert result.code == 2, (result.code, result.stderr)
    assert len(lines) == 1, f"expected one line, got:\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    assert lines[0].startswith("shardmgr: error:"), lines[0]
    assert must_mention.lower() in lines[0].lower(), lines[0]
    assert SECRET_TOKEN not in result.stdout + result.stderr
    # nothing started half-way: no process left, no pid file, no saved state
    assert marked_pids(marker) == []
    assert not (state / "supervisor.pid").exists()
    assert not (state / "sessions.json").exists()


def test_missing_token_names_discord_token(tmp_path: Path, marker: str) -> None:
    assert_user_error(
        [], must_mention="DISCORD_TOKEN", cwd=tmp_path, marker=marker, env=base_env(marker)
    )


@pytest.mark.parametrize(
    ("token", "hint"),
    [
        ("abc", "malformed"),
        ("Bot " + SECRET_TOKEN, "without the 'Bot ' prefix"),
        ("bm90LWFuLWlk.GChaos.chaos-token-never-real-0123456789", "malformed"),
        ("a..b", "malformed"),
    ],
)
def test_malformed_token_is_refused_before_anything_starts(
    tmp_path: Path, marker: str, token: str, hint: str
) -> None:
    assert_user_error(
        [],
        must_mention=hint,
        cwd=tmp_path,
        marker=marker,
        env=base_env(marker, DISCORD_TOKEN=token),
    )


def test_unreadable_token_file_names_the_file(tmp_path: Path, marker: str) -> None:
    missing = tmp_path / "no-such-token"
    assert_user_error(
        ["--token-file", str(missing)],
        must_mention=str(missing),
        cwd=tmp_path,
        marker=marker,
        env=base_env(marker),
    )


def test_unknown_option_is_named(tmp_path: Path, marker: str) -> None:
    assert_user_error(
        ["--frobnicate", "3"], must_mention="--frobnicate", cwd=tmp_path, marker=marker
    )


def test_bad_toml_names_the_config_file(tmp_path: Path, marker: str) -> None:
    config = tmp_path / "shardmgr.toml"
    config.write_text("shards = [\n")
    assert_user_error(
        ["--config", str(config)], must_mention=str(config), cwd=tmp_path, marker=marker
    )


def test_unknown_toml_setting_is_named(tmp_path: Path, marker: str) -> None:
    config = tmp_path / "shardmgr.toml"
    config.write_text('[shardmgr]\nshardz = "auto"\n')
    assert_user_error(["--config", str(config)], must_mention="shardz", cwd=tmp_path, marker=marker)


def test_missing_config_file_is_named(tmp_path: Path, marker: str) -> None:
    config = tmp_path / "absent.toml"
    assert_user_error(
        ["--config", str(config)], must_mention="does not exist", cwd=tmp_path, marker=marker
    )


def test_wrongly_typed_environment_setting_is_named(tmp_path: Path, marker: str) -> None:
    env = base_env(marker, DISCORD_TOKEN=SECRET_TOKEN, SHARDMGR_WORKERS="many")
    assert_user_error([], must_mention="SHARDMGR_WORKERS", cwd=tmp_path, marker=marker, env=env)


def test_shard_ids_outside_the_total_are_refused(tmp_path: Path, marker: str) -> None:
    assert_user_error(
        ["--total-shards", "4", "--shard-ids", "2-7"],
        must_mention="--shard-ids",
        cwd=tmp_path,
        marker=marker,
    )


def test_shard_ids_without_a_total_are_refused(tmp_path: Path, marker: str) -> None:
    assert_user_error(
        ["--shard-ids", "0-1"], must_mention="--total-shards", cwd=tmp_path, marker=marker
    )


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--shards", "0"], "--shards"),
        (["--shards", "-3"], "--shards"),
        (["--workers", "0"], "--workers"),
        (["--shards-per-worker", "-1"], "--shards-per-worker"),
        (["--total-shards", "0"], "--total-shards"),
        (["--shards", "lots"], "--shards"),
    ],
)
def test_zero_or_negative_sizes_are_refused(
    tmp_path: Path, marker: str, args: list[str], hint: str
) -> None:
    assert_user_error(args, must_mention=hint, cwd=tmp_path, marker=marker)


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--compress", "brotli"], "--compress"),
        (["--intents", "GUILDS,NOT_AN_INTENT"], "NOT_AN_INTENT"),
        (["--http", "127.0.0.1"], "--http"),
    ],
)
def test_other_bad_values_are_named(
    tmp_path: Path, marker: str, args: list[str], hint: str
) -> None:
    assert_user_error(args, must_mention=hint, cwd=tmp_path, marker=marker)


def test_handler_that_does_not_import_is_named(tmp_path: Path, marker: str) -> None:
    assert_user_error(
        ["--handler", "no_such_module_qq:handle"],
        must_mention="no_such_module_qq",
        cwd=tmp_path,
        marker=marker,
    )


def test_handler_module_that_raises_on_import_is_named(tmp_path: Path, marker: str) -> None:
    (tmp_path / "broken_bot.py").write_text("raise RuntimeError('boom at import')\n")
    env = base_env(marker, DISCORD_TOKEN=SECRET_TOKEN)
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    assert_user_error(
        ["--handler", "broken_bot:handle"],
        must_mention="broken_bot",
        cwd=tmp_path,
        marker=marker,
        env=env,
    )


def test_handler_attribute_missing_is_named(tmp_path: Path, marker: str) -> None:
    assert_user_error(
        ["--handler", "shardmgr.handlers:nope"], must_mention="nope", cwd=tmp_path, marker=marker
    )


@pytest.mark.parametrize(
    ("source", "hint"),
    [
        ("handle = 42\n", "not callable"),
        ("def handle(event):\n    return None\n", "async"),
    ],
)
def test_handler_that_is_not_an_async_callable_is_refused(
    tmp_path: Path, marker: str, source: str, hint: str
) -> None:
    (tmp_path / "my_bot.py").write_text(source)
    env = base_env(marker, DISCORD_TOKEN=SECRET_TOKEN)
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    assert_user_error(
        ["--handler", "my_bot:handle"], must_mention=hint, cwd=tmp_path, marker=marker, env=env
    )


def test_unreachable_api_is_one_line(tmp_path: Path, marker: str) -> None:
    port = free_port()  # nothing listens there
    assert_user_error(
        ["--api-base", f"http://127.0.0.1:{port}/api/v10", "--discovery-attempts", "1"],
        must_mention=f"127.0.0.1:{port}",
        cwd=tmp_path,
        marker=marker,
    )


def test_token_the_api_rejects_is_one_line(tmp_path: Path, marker: str) -> None:
    other = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.OtHeR.NotTheFakeGatewaysToken_abcdef012345"
    with fake_gateway(tmp_path, new_marker(), token=SECRET_TOKEN) as (url, _):
        assert_user_error(
            ["--api-base", f"{url}/api/v10", "--discovery-attempts", "1"],
            must_mention="token",
            cwd=tmp_path,
            marker=marker,
            env=base_env(marker, DISCORD_TOKEN=other),
        )


def test_port_in_use_is_one_line_and_starts_no_worker(tmp_path: Path, marker: str) -> None:
    with socket.socket() as busy, fake_gateway(tmp_path, new_marker()) as (url, _):
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        state = tmp_path / "state"
        result = run_cli(
            [
                "start",
                "--state-dir",
                str(state),
                "--api-base",
                f"{url}/api/v10",
                "--http",
                f"127.0.0.1:{port}",
            ],
            base_env(marker, DISCORD_TOKEN=SECRET_TOKEN),
            tmp_path,
        )
        assert result.code == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines == [
            f"shardmgr: error: --http 127.0.0.1:{port}: the port is in use (another shardmgr "
            "running? pick another with --http HOST:PORT, or 127.0.0.1:0 for any free port)"
        ], result.stderr
        # Found before discovery: no plan printed, nothing started.
        assert result.stdout == ""
        assert marked_pids(marker) == []
        assert not (state / "supervisor.pid").exists()


def _one_error_line(result_stderr: str) -> str:
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, result_stderr
    return lines[0]


def test_token_given_as_an_argument_is_an_unknown_option_that_is_not_echoed(
    tmp_path: Path, marker: str
) -> None:
    for argv in (["--token", SECRET_TOKEN], [f"--token={SECRET_TOKEN}"], ["--tok", SECRET_TOKEN]):
        result = run_cli(["start", *argv], base_env(marker), tmp_path)
        assert result.code == 2
        assert SECRET_TOKEN not in result.stdout + result.stderr
        name = argv[0].split("=")[0]
        expected = f"shardmgr: error: unrecognized arguments: {name}"
        if name == "--token":
            expected += " (the token comes from DISCORD_TOKEN or --token-file FILE)"
        assert _one_error_line(result.stderr) == expected


def test_token_file_path_that_looks_like_a_token_is_not_echoed(tmp_path: Path, marker: str) -> None:
    result = run_cli(["start", "--token-file", SECRET_TOKEN], base_env(marker), tmp_path)
    assert result.code == 2 and SECRET_TOKEN not in result.stdout + result.stderr
    assert _one_error_line(result.stderr) == (
        "shardmgr: error: cannot read the token file (a path that looks like a token, not "
        "shown): No such file or directory"
    )


def test_environment_value_error_names_the_variable(tmp_path: Path, marker: str) -> None:
    env = base_env(marker, DISCORD_TOKEN=SECRET_TOKEN, SHARDMGR_SHARDS="0")
    result = run_cli(["start"], env, tmp_path)
    assert result.code == 2
    assert _one_error_line(result.stderr) == "shardmgr: error: SHARDMGR_SHARDS must be at least 1"


def test_bad_environment_bool_lists_the_accepted_values(tmp_path: Path, marker: str) -> None:
    env = base_env(marker, DISCORD_TOKEN=SECRET_TOKEN, SHARDMGR_KEEP_SESSIONS="sure")
    result = run_cli(["start"], env, tmp_path)
    assert _one_error_line(result.stderr) == (
        "shardmgr: error: SHARDMGR_KEEP_SESSIONS must be yes/no, on/off, true/false or 1/0, "
        "not 'sure'"
    )


def test_unknown_environment_setting_is_warned_about_with_the_nearest_name(
    tmp_path: Path, marker: str
) -> None:
    env = base_env(marker, SHARDMGR_IDENTIFY_WINDOW="5")
    result = run_cli(["start"], env, tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.code == 2 and len(lines) == 2, result.stderr
    assert lines[0].endswith(
        'warning shardmgr "environment variable SHARDMGR_IDENTIFY_WINDOW is not a setting; '
        'did you mean SHARDMGR_IDENTIFY_WINDOW_S? it is ignored"'
    ), lines[0]
    assert lines[1] == "shardmgr: error: no token: set DISCORD_TOKEN or pass --token-file PATH"


def test_jwt_token_is_refused_against_discord(tmp_path: Path, marker: str) -> None:
    env = base_env(marker, DISCORD_TOKEN=JWT)
    result = run_cli(["start"], env, tmp_path)
    assert result.code == 2 and JWT not in result.stderr
    assert _one_error_line(result.stderr) == (
        "shardmgr: error: DISCORD_TOKEN is malformed: its first part is not the bot's id in base64"
    )


def test_jwt_token_is_only_a_warning_against_another_server(tmp_path: Path, marker: str) -> None:
    port = free_port()  # a Discord-compatible server that happens to be down
    env = base_env(marker, DISCORD_TOKEN=JWT, SHARDMGR_DISCOVERY_ATTEMPTS="1")
    result = run_cli(["start", "--api-base", f"http://127.0.0.1:{port}/api/v9"], env, tmp_path)
    lines = result.stderr.strip().splitlines()
    assert JWT not in result.stderr
    assert lines[0].endswith(
        "warning shardmgr \"DISCORD_TOKEN is malformed: its first part is not the bot's id in "
        "base64; used anyway, since --api-base is not Discord's\""
    ), lines
    # It went on to discovery.
    assert "cannot reach" in lines[-1], lines

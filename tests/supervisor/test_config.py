from __future__ import annotations

from pathlib import Path

import pytest

from shardmgr.config import Settings, check_token_shape, load_settings, load_token
from shardmgr.errors import UserError
from tests.supervisor.conftest import make_token


def _toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "shardmgr.toml"
    path.write_text(text)
    return str(path)


def test_defaults_apply_when_nothing_is_given() -> None:
    s = load_settings({}, env={})
    assert s == Settings(state_dir=s.state_dir)
    assert s.shards == "auto" and s.http == "127.0.0.1:9191"


def test_toml_overrides_defaults(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'shards = "8"\nping_interval_s = 2.5\n')
    s = load_settings({}, env={}, config_path=path)
    assert s.shards == "8" and s.ping_interval_s == 2.5


def test_toml_may_nest_settings_under_a_shardmgr_table(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[shardmgr]\nworkers = 3\n")
    assert load_settings({}, env={}, config_path=path).workers == 3


def test_environment_overrides_toml(tmp_path: Path) -> None:
    path = _toml(tmp_path, "workers = 3\nlog_json = false\n")
    env = {"SHARDMGR_WORKERS": "5", "SHARDMGR_LOG_JSON": "true"}
    s = load_settings({}, env=env, config_path=path)
    assert s.workers == 5 and s.log_json is True


def test_flags_override_environment_and_toml(tmp_path: Path) -> None:
    path = _toml(tmp_path, "workers = 3\n")
    s = load_settings({"workers": "7"}, env={"SHARDMGR_WORKERS": "5"}, config_path=path)
    assert s.workers == 7


def test_config_path_may_come_from_the_environment(tmp_path: Path) -> None:
    path = _toml(tmp_path, "workers = 4\n")
    assert load_settings({}, env={"SHARDMGR_CONFIG": path}).workers == 4


def test_unknown_toml_key_is_a_user_error(tmp_path: Path) -> None:
    path = _toml(tmp_path, "shardz = 3\n")
    with pytest.raises(UserError, match="unknown setting 'shardz'"):
        load_settings({}, env={}, config_path=path)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(UserError, match="SHARDMGR_PING_INTERVAL_S"):
        load_settings({}, env={"SHARDMGR_PING_INTERVAL_S": "soon"})


def test_zero_shards_per_worker_is_rejected() -> None:
    with pytest.raises(UserError, match="--shards-per-worker must be at least 1"):
        load_settings({"shards_per_worker": "0"}, env={})


def test_shard_ids_outside_total_shards_are_rejected() -> None:
    with pytest.raises(UserError, match="outside --total-shards 8"):
        load_settings({"total_shards": "8", "shard_ids": "4-8"}, env={})


def test_shard_ids_need_total_shards() -> None:
    with pytest.raises(UserError, match="needs --total-shards"):
        load_settings({"shard_ids": "0-3"}, env={})


def test_unknown_intent_is_rejected() -> None:
    with pytest.raises(UserError, match="--intents"):
        load_settings({"intents": "GUILDS,NOPE"}, env={})


def test_bad_compress_mode_is_rejected() -> None:
    with pytest.raises(UserError, match="--compress"):
        load_settings({"compress": "gzip"}, env={})


def test_bad_http_address_is_rejected() -> None:
    with pytest.raises(UserError, match="--http"):
        load_settings({"http": "9191"}, env={})


def test_host_index_without_host_count_is_rejected() -> None:
    with pytest.raises(UserError, match="together"):
        load_settings({"total_shards": "8"}, env={"SHARDMGR_HOST_INDEX": "0"})


def test_token_comes_from_discord_token_env() -> None:
    token = make_token()
    assert load_token(Settings(), None, {"DISCORD_TOKEN": token + "\n"}) == token


def test_token_file_flag_beats_discord_token_env(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(make_token(42) + "\n")
    got = load_token(Settings(), str(path), {"DISCORD_TOKEN": make_token(7)})
    assert got == make_token(42)


def test_missing_token_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no token: set DISCORD_TOKEN or pass --token-file"):
        load_token(Settings(), None, {})


def test_unreadable_token_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read the token file"):
        load_token(Settings(), str(tmp_path / "missing"), {})


@pytest.mark.parametrize(
    "bad", ["abc", "a.b", "x.y.z.w", "bm90LWFuLWlk.abcd.efghijklmnopqrstuvwxyz"]
)
def test_malformed_token_is_a_user_error(bad: str) -> None:
    with pytest.raises(UserError, match="malformed"):
        check_token_shape(bad)


def test_token_with_bot_prefix_is_rejected_with_a_hint() -> None:
    with pytest.raises(UserError, match="without the 'Bot ' prefix"):
        check_token_shape("Bot " + make_token())


def test_ping_timeout_not_longer_than_the_interval_is_rejected() -> None:
    with pytest.raises(UserError, match="ping-timeout-s"):
        load_settings({"ping_interval_s": "5", "ping_timeout_s": "5"}, env={})


@pytest.mark.parametrize("value", ["49", "251"])
def test_large_threshold_outside_discords_range_is_rejected(value: str) -> None:
    with pytest.raises(UserError, match="--large-threshold must be between 50 and 250"):
        load_settings({"large_threshold": value}, env={})


def test_sink_with_an_explicit_handler_is_rejected() -> None:
    with pytest.raises(UserError, match="either --sink or --handler"):
        load_settings(
            {"sink": "redis-stream://127.0.0.1:6379/0", "handler": "shardmgr.handlers:jsonl"},
            env={},
        )


@pytest.mark.parametrize("name", ["restart_stable_s", "resume_window_s", "crash_loop_restarts"])
def test_non_positive_restart_and_resume_settings_are_rejected(name: str) -> None:
    with pytest.raises(UserError, match=name.replace("_", "-")):
        load_settings({name: "0"}, env={})


def test_bad_redis_url_error_does_not_show_the_password() -> None:
    with pytest.raises(UserError) as info:
        load_settings({"sink": "http://user:hunter2@redis:6379/0"}, env={})
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


def test_default_state_file_is_named_after_the_hosts_slice() -> None:
    s = load_settings({"total_shards": "16", "shard_ids": "4-7"}, env={})
    assert s.state_path.name == "sessions-4-7-of-16.json"
    hosts = load_settings(
        {"total_shards": "10"}, env={"SHARDMGR_HOST_INDEX": "1", "SHARDMGR_HOST_COUNT": "2"}
    )
    assert hosts.state_path.name == "sessions-5-9-of-10.json"
    assert load_settings({}, env={}).state_path.name == "sessions.json"

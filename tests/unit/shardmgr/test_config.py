from __future__ import annotations

from pathlib import Path

import pytest

from shardmgr.config import Settings, load_settings, unknown_env_warnings
from shardmgr.errors import UserError
from shardmgr.settingvalues import HttpAddress, LimiterKind, LimiterSpec, ShardIds
from shardmgr.token import check_token_shape, load_token
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
    assert load_token(None, None, {"DISCORD_TOKEN": token + "\n"}) == (token, "DISCORD_TOKEN")


def test_token_file_flag_beats_discord_token_env(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(make_token(42) + "\n")
    got, _source = load_token(str(path), None, {"DISCORD_TOKEN": make_token(7)})
    assert got == make_token(42)


def test_missing_token_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no token: set DISCORD_TOKEN or pass --token-file"):
        load_token(None, None, {})


def test_unreadable_token_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read the token file"):
        load_token(str(tmp_path / "missing"), None, {})


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
    with pytest.raises(UserError, match="--ping-timeout"):
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
    with pytest.raises(UserError, match="--" + name.removesuffix("_s").replace("_", "-")):
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


def test_toml_takes_each_setting_in_its_natural_type(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        "shards = 8\n"
        'intents = ["GUILDS", "GUILD_MESSAGES"]\n'
        "total_shards = 16\n"
        "shard_ids = [4, 5, 6, 7]\n"
        "identify_window_s = 6\n"
        "keep_sessions = true\n"
        "handler_backlog = 500\n",
    )
    s = load_settings({}, env={}, config_path=path)
    assert s.shards == "8" and s.total_shards == 16
    assert s.intents_mask == (1 << 0) | (1 << 9)
    assert s.shard_selection == ShardIds((4, 5, 6, 7))
    assert s.identify_window_s == 6.0 and s.keep_sessions is True and s.handler_backlog == 500


def test_toml_list_of_ranges_selects_those_shards(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'total_shards = 16\nshard_ids = ["0-2", 9]\n')
    s = load_settings({}, env={}, config_path=path)
    assert s.shard_selection is not None and s.shard_selection.ids == (0, 1, 2, 9)
    assert s.state_path.name == "sessions-0-9-of-16.json"


def test_toml_value_of_the_wrong_type_names_the_key_and_the_type(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'workers = "three"\n')
    with pytest.raises(UserError) as info:
        load_settings({}, env={}, config_path=path)
    assert str(info.value) == f"{path}: workers must be a whole number, not 'three'"


def test_toml_bool_is_not_taken_as_a_number(tmp_path: Path) -> None:
    path = _toml(tmp_path, "workers = true\n")
    with pytest.raises(UserError, match="workers must be a whole number, not True"):
        load_settings({}, env={}, config_path=path)


def test_typed_views_are_parsed_once_at_load() -> None:
    s = load_settings(
        {"total_shards": "8", "shard_ids": "0-3", "http": "0.0.0.0:9300", "intents": "GUILDS"},
        env={},
    )
    assert s.shard_selection == ShardIds((0, 1, 2, 3))
    assert s.http_address == HttpAddress("0.0.0.0", 9300)
    assert s.http_address.connect_host == "127.0.0.1"
    assert s.intents_mask == 1
    assert s.limiter == LimiterSpec(LimiterKind.LOCAL)
    # Cached by load_settings: the same object every time, never parsed again.
    assert s.http_address is s.http_address and s.shard_selection is s.shard_selection


def test_redis_limiter_is_typed_with_its_url() -> None:
    s = Settings(identify_limiter="redis://127.0.0.1:6379/0")
    assert s.limiter == LimiterSpec(LimiterKind.REDIS, "redis://127.0.0.1:6379/0")


def test_handler_target_is_the_sinks_when_a_sink_is_given() -> None:
    assert Settings(handler="bot:handler").handler_target == "bot:handler"
    sink = Settings(sink="redis-stream://127.0.0.1:6379/0")
    assert sink.handler_target == "shardmgr.sinks.redis_stream:sink"


def test_app_dir_is_made_absolute_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}, env={}).app_path == str(tmp_path)


def test_app_dir_that_is_not_a_directory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        load_settings({"app_dir": str(tmp_path / "nope")}, env={})
    assert str(info.value) == f"--app-dir {tmp_path / 'nope'} is not a directory"


def test_error_about_an_environment_value_names_the_variable() -> None:
    with pytest.raises(UserError) as info:
        load_settings({}, env={"SHARDMGR_SHARDS": "0"})
    assert str(info.value) == "SHARDMGR_SHARDS must be at least 1"


def test_error_about_a_toml_value_names_the_file_and_key(tmp_path: Path) -> None:
    path = _toml(tmp_path, "shards_per_worker = 0\n")
    with pytest.raises(UserError) as info:
        load_settings({}, env={}, config_path=path)
    assert str(info.value) == f"{path}: shards_per_worker must be at least 1, not 0"


@pytest.mark.parametrize(
    ("text", "value"),
    [("yes", True), ("no", False), ("on", True), ("off", False), ("TRUE", True), ("0", False)],
)
def test_environment_bool_accepts_yes_no_on_off_true_false_1_0(text: str, value: bool) -> None:
    assert load_settings({}, env={"SHARDMGR_KEEP_SESSIONS": text}).keep_sessions is value


def test_bad_environment_bool_says_which_values_are_accepted() -> None:
    with pytest.raises(UserError) as info:
        load_settings({}, env={"SHARDMGR_LOG_JSON": "maybe"})
    assert str(info.value) == (
        "SHARDMGR_LOG_JSON must be yes/no, on/off, true/false or 1/0, not 'maybe'"
    )


def test_unknown_shardmgr_variable_is_warned_about_with_the_nearest_name() -> None:
    env = {
        "SHARDMGR_IDENTIFY_WINDOW": "5",
        "SHARDMGR_SINK_URL": "redis-stream://x",
        "SHARDMGR_JSONL": "events.jsonl",
        "SHARDMGR_CONFIG": "x.toml",
        "SHARDMGR_HOST_INDEX": "0",
        "SHARDMGR_WORKERS": "2",
        "OTHER_IDENTIFY_WINDOW": "5",
    }
    assert unknown_env_warnings(env) == [
        "environment variable SHARDMGR_IDENTIFY_WINDOW is not a setting; "
        "did you mean SHARDMGR_IDENTIFY_WINDOW_S? it is ignored"
    ]


def test_unknown_toml_key_suggests_the_nearest_setting(tmp_path: Path) -> None:
    path = _toml(tmp_path, "identify_window = 5\n")
    with pytest.raises(UserError) as info:
        load_settings({}, env={}, config_path=path)
    assert str(info.value) == (
        f"{path}: unknown setting 'identify_window' (did you mean 'identify_window_s'?)"
    )

"""Every setting the README documents is a ``Settings`` field that a flag, an environment
variable and a TOML key can each set: the test reads the README's settings table, so a
setting documented later is covered the day its row lands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from shardmgr.cli import _typed_flags, build_parser
from shardmgr.config import FIELD_TYPES, Settings, env_name, flag_name, load_settings
from shardmgr.errors import UserError
from tests.commands.test_settings import worker_config_for

README = Path(__file__).resolve().parents[2] / "README.md"
# Settings that need others to be valid on their own (a slice needs the bot's shard count).
COMPANIONS: dict[str, dict[str, Any]] = {
    "shard_ids": {"total_shards": 8},
    "host_index": {"host_count": 3, "total_shards": 6},
    "host_count": {"host_index": 0, "total_shards": 4},
}
# A valid value other than the default for each text setting (numbers and booleans are
# derived from the default).
TEXT_SAMPLES: dict[str, str] = {
    "shards": "3",
    "shard_ids": "2-5",
    "handler": "shardmgr.handlers:jsonl",
    "app_dir": "/",
    "intents": "GUILDS",
    "compress": "zstd-stream",
    "api_base": "http://127.0.0.1:1/api/v10",
    "http": "127.0.0.1:9300",
    "token_file": "/run/secrets/token",
    "admin_secret": "s3cret-admin",
    "identify_limiter": "redis://127.0.0.1:6379/0",
    "sink": "redis-stream://127.0.0.1:6379/0",
    "identify_limiter_file": "/run/secrets/identify-limiter-url",
    "sink_file": "/run/secrets/sink-url",
    "rest_limiter": "redis://127.0.0.1:6379/1",
    "state_dir": "/var/lib/shardmgr",
    "state_file": "/var/lib/shardmgr/s.json",
    "log_level": "DEBUG",
    "identify_browser": "mybot",
    "identify_device": "rack-3",
    "presence_status": "dnd",
    "presence_activity": "the tests",
    "presence_activity_type": "watching",
}


def documented_settings(text: str) -> list[tuple[str, bool]]:
    """(name, settable by flag) for each name in the first column of the table whose header
    starts with ``| setting |``. ``_cap_s`` after ``restart_backoff_base_s`` is shorthand for
    ``restart_backoff_cap_s``; a row marked ``(env/TOML only)`` has no flag on purpose."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| setting |"))
    out: list[tuple[str, bool]] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cell = line.split("|")[1]
        previous = ""
        for name in re.findall(r"`([a-z_]+)`", cell):
            if name.startswith("_"):
                kept = previous.split("_")[: -len(name.strip("_").split("_"))]
                name = "_".join(kept) + name
            out.append((name, "env/TOML only" not in cell))
            previous = name
    return out


def _sample(name: str) -> Any:
    """A valid value, different from the default, in its natural (TOML) type."""
    ftype = FIELD_TYPES[name]
    default = getattr(Settings(), name)
    if ftype is bool:
        return not default
    if ftype is float:
        return default * 2 + 1
    if ftype == float | None:
        return 2.5 if default is None else default * 2 + 1
    if ftype is int or ftype == int | None:
        return 2 if default is None else default + 1
    if name not in TEXT_SAMPLES:
        pytest.fail(f"no sample value for the text setting {name!r}: add one to TEXT_SAMPLES")
    return TEXT_SAMPLES[name]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _toml(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else _text(value)


def _expected(name: str, value: Any) -> Any:
    return float(value) if FIELD_TYPES[name] in (float, float | None) else value


def _load(flags: dict[str, Any], env: dict[str, str], toml: str, tmp_path: Path) -> Settings:
    path = tmp_path / "shardmgr.toml"
    path.write_text(toml)
    return load_settings(flags, env=env, config_path=str(path))


def test_the_readme_table_is_found_and_names_settings() -> None:
    names = [name for name, _flag in documented_settings(README.read_text())]
    assert "shards" in names and "restart_backoff_cap_s" in names and "log_json" in names


@pytest.mark.parametrize(("name", "has_flag"), documented_settings(README.read_text()))
def test_documented_setting_is_settable_by_flag_env_and_toml(
    name: str, has_flag: bool, tmp_path: Path
) -> None:
    assert name in FIELD_TYPES, f"the README documents {name!r}, which is not a setting"
    value = _sample(name)
    companions = COMPANIONS.get(name, {})
    if name == "sink":
        companions = {"handler": "shardmgr.handlers:null"}
    base_toml = "".join(f"{k} = {_toml(v)}\n" for k, v in companions.items())

    by_toml = _load({}, {}, base_toml + f"{name} = {_toml(value)}\n", tmp_path)
    assert getattr(by_toml, name) == _expected(name, value)

    by_env = _load({}, {env_name(name): _text(value)}, base_toml, tmp_path)
    assert getattr(by_env, name) == _expected(name, value)

    if not has_flag:
        with pytest.raises(UserError, match="unrecognized arguments"):
            build_parser().parse_args(["start", flag_name(name), _text(value)])
        return
    if FIELD_TYPES[name] is bool:
        argv = [flag_name(name) if value else "--no-" + flag_name(name)[2:]]
    else:
        argv = [flag_name(name), _text(value)]
    args = build_parser().parse_args(["start", *argv])
    by_flag = _load(_typed_flags(args), {}, base_toml, tmp_path)
    assert getattr(by_flag, name) == _expected(name, value)


def test_handler_delivery_settings_reach_the_worker_config() -> None:
    args = build_parser().parse_args(
        ["start", "--handler-backlog", "250", "--handler-batch", "10", "--drain-timeout", "2.5"]
    )
    config = worker_config_for(load_settings(_typed_flags(args), env={}))
    assert (config.handler_backlog, config.handler_batch, config.drain_timeout_s) == (250, 10, 2.5)

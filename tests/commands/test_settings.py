"""The session settings: flags / env / TOML into ``Settings``, validation as one line, and
each setting reaching the ``WorkerConfig`` the supervisor starts a worker with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shardmgr.cli import main
from shardmgr.config import Settings, load_settings
from shardmgr.discovery import GatewayInfo
from shardmgr.errors import UserError
from shardmgr.identify import LocalIdentifyLimiter, SessionStartLimit
from shardmgr.metrics import Metrics
from shardmgr.plan import make_plan
from shardmgr.restarts import RestartPolicy
from shardmgr.supervisor import Supervisor
from shardmgr.workerslot import WorkerSlot
from tests.supervisor.conftest import make_token
from workers import ipc

MiB = 1024 * 1024


def worker_config_for(settings: Settings) -> ipc.WorkerConfig:
    limits = SessionStartLimit(total=1000, remaining=1000, reset_after_s=1e5, max_concurrency=1)
    supervisor = Supervisor(
        settings=settings,
        token=make_token(),
        gateway=GatewayInfo(url="ws://127.0.0.1:1", recommended_shards=1, limits=limits),
        plan=make_plan(shards="1", recommended=1, max_concurrency=1, shards_per_worker=1),
        limiter=LocalIdentifyLimiter(limits, window_s=0.2),
        metrics=Metrics(),
        announce=lambda text: None,
    )
    slot = WorkerSlot(0, [0], RestartPolicy(base_s=0.1, cap_s=1.0, stable_s=1.0))
    return supervisor.worker_config(slot)


def test_defaults_reach_worker_config() -> None:
    config = worker_config_for(load_settings({}, env={}))
    assert config.check_heartbeat_acks is True
    assert config.identify_properties == {"browser": "shardmgr", "device": "shardmgr"}
    assert config.presence is None
    assert config.max_message_bytes == 64 * MiB
    assert config.compress == "zlib-stream"


def test_no_heartbeat_ack_check_flag_reaches_worker_config(capsys: Any) -> None:
    from shardmgr.cli import _typed_flags, build_parser

    args = build_parser().parse_args(["start", "--no-heartbeat-ack-check"])
    config = worker_config_for(load_settings(_typed_flags(args), env={}))
    assert config.check_heartbeat_acks is False


def test_identify_properties_reach_worker_config() -> None:
    env = {"SHARDMGR_IDENTIFY_BROWSER": "mybot", "SHARDMGR_IDENTIFY_DEVICE": "rack-3"}
    config = worker_config_for(load_settings({}, env=env))
    assert config.identify_properties == {"browser": "mybot", "device": "rack-3"}


def test_initial_presence_reaches_worker_config(tmp_path: Path) -> None:
    toml = tmp_path / "shardmgr.toml"
    toml.write_text(
        'presence_status = "idle"\npresence_activity = "the logs"\n'
        'presence_activity_type = "watching"\n'
    )
    config = worker_config_for(load_settings({}, env={}, config_path=str(toml)))
    assert config.presence == {
        "since": None,
        "activities": [{"name": "the logs", "type": 3}],
        "status": "idle",
        "afk": False,
    }


def test_max_message_bytes_reaches_worker_config() -> None:
    config = worker_config_for(load_settings({"max_message_bytes": str(2 * MiB)}, env={}))
    assert config.max_message_bytes == 2 * MiB


def test_compress_payload_reaches_worker_config() -> None:
    config = worker_config_for(load_settings({"compress": "payload"}, env={}))
    assert config.compress == "payload"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"max_message_bytes": "1000"}, "--max-message-bytes must be at least 1048576"),
        ({"presence_status": "busy"}, "--presence-status must be one of"),
        ({"presence_activity_type": "singing"}, "--presence-activity-type must be one of"),
        ({"identify_browser": " "}, "--identify-browser must not be empty"),
        ({"compress": "gzip"}, "--compress must be one of zlib-stream, zstd-stream, payload"),
    ],
)
def test_bad_session_settings_are_one_line_errors(flags: dict[str, str], message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        load_settings(flags, env={})
    assert "\n" not in str(info.value)


def test_bad_max_message_bytes_exits_2_with_one_line(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", make_token())
    assert main(["start", "--max-message-bytes", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "max-message-bytes" in err

"""start.py's helpers: the worker environment, the shared-slice warning, saving sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardmgr.config import Settings
from shardmgr.plan import make_plan
from shardmgr.sessions import SessionStore
from shardmgr.start import _save_sessions, warn_if_unshared_slice, worker_environment
from tests.supervisor.conftest import make_token


def test_worker_environment_holds_no_token_secret_or_supervisor_settings() -> None:
    env = {
        "PATH": "/usr/bin",
        "DISCORD_TOKEN": "secret-token",
        "SHARDMGR_ADMIN_SECRET": "admin",
        "SHARDMGR_IDENTIFY_LIMITER": "redis://:pw@redis:6379/0",
        "SHARDMGR_JSONL": "/tmp/events.jsonl",
    }
    settings = Settings(sink="redis-stream://redis:6379/0", app_dir="/srv/bot")
    out = worker_environment(settings, env)
    assert out == {
        "PATH": "/usr/bin",
        "SHARDMGR_JSONL": "/tmp/events.jsonl",
        "PYTHONPATH": "/srv/bot",
    }  # the sink URL (it may hold a password) reaches workers over their pipe instead


def test_a_slice_with_the_local_limiter_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    plan = make_plan(
        shards="auto", recommended=8, max_concurrency=1, total_shards=8, slice_ids=range(4)
    )
    warn_if_unshared_slice(Settings(total_shards=8, shard_ids="0-3"), plan)
    assert "--identify-limiter redis://" in caplog.text


def test_the_whole_bot_with_the_local_limiter_logs_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan = make_plan(shards="8", recommended=8, max_concurrency=1)
    warn_if_unshared_slice(Settings(), plan)
    assert "identify-limiter" not in caplog.text


class _Stopped:
    """What ``_save_sessions`` reads from a supervisor that stopped with --keep-sessions."""

    def __init__(self) -> None:
        self.sessions = SessionStore()
        self.plan = make_plan(shards="2", recommended=2, max_concurrency=1)


def test_unwritable_state_file_is_one_error_line_and_a_failed_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = Settings(state_file=str(blocker / "sessions.json"))
    saved = _save_sessions(settings, make_token(), _Stopped())  # type: ignore[arg-type]
    assert saved is False
    assert "cannot save the suspended sessions" in caplog.text
    assert "Traceback" not in caplog.text

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from shardmgr.sessions import SessionStore, read_state, write_state
from tests.supervisor.conftest import make_token
from workers import ipc


def _info(sid: str = "abc", seq: int = 10, url: str = "ws://r") -> ipc.SessionInfo:
    return ipc.SessionInfo(session_id=sid, seq=seq, resume_url=url)


def _started(kind: str, info: ipc.SessionInfo, shard: int = 0) -> ipc.SessionStarted:
    return ipc.SessionStarted(gen=1, shard_id=shard, kind=kind, session=info, guilds=3, at=0.0)


def test_ready_starts_a_session() -> None:
    store = SessionStore()
    store.on_message(_started("identify", _info(seq=1)))
    assert store.get(0) == _info(seq=1)


def test_stats_checkpoint_advances_the_session() -> None:
    store = SessionStore()
    store.on_message(_started("identify", _info(seq=1)))
    stats = ipc.Stats(gen=1, shards=[ipc.ShardStats(shard_id=0, session=_info(seq=42))])
    store.on_message(stats)
    assert store.get(0) == _info(seq=42)


def test_stats_without_a_checkpoint_change_nothing() -> None:
    store = SessionStore()
    store.on_message(_started("identify", _info(seq=5)))
    store.on_message(ipc.Stats(gen=1, shards=[ipc.ShardStats(shard_id=0)]))
    assert store.get(0) == _info(seq=5)


def test_resumed_keeps_the_handler_checkpoint_not_the_socket_seq() -> None:
    store = SessionStore()
    store.put(0, _info(seq=40))
    store.on_message(_started("resume", _info(seq=55, url="ws://new")))
    assert store.get(0) == _info(seq=40, url="ws://new")


def test_reconnect_without_resume_forgets_the_session() -> None:
    store = SessionStore()
    store.put(0, _info())
    store.on_message(
        ipc.Reconnecting(gen=1, shard_id=0, reason="op9", close_code=None, resume=False, delay_s=1)
    )
    assert store.get(0) is None


def test_fatal_stop_forgets_the_session() -> None:
    store = SessionStore()
    store.put(0, _info())
    store.on_message(
        ipc.ShardStopped(gen=1, shard_id=0, reason="4004", close_code=4004, fatal=True)
    )
    assert store.get(0) is None


def test_suspended_sessions_are_stored() -> None:
    store = SessionStore()
    store.on_message(ipc.Suspended(gen=1, sessions={0: _info(seq=7), 3: _info("d", 9)}))
    assert store.snapshot() == {0: _info(seq=7), 3: _info("d", 9)}


def test_state_file_round_trips_for_the_same_token_and_shard_count(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sessions.json"
    token = make_token()
    write_state(path, token, 4, {1: _info(seq=3)})
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert token not in path.read_text()
    assert read_state(path, token, 4, max_age_s=60) == {1: _info(seq=3)}


def test_state_file_is_consumed_by_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    write_state(path, make_token(), 4, {1: _info()})
    read_state(path, make_token(), 4, max_age_s=60)
    assert not path.exists()


def test_state_file_of_another_token_is_ignored_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "sessions.json"
    write_state(path, make_token(1), 4, {1: _info()})
    with caplog.at_level(logging.WARNING):
        assert read_state(path, make_token(2), 4, max_age_s=60) == {}
    assert "another token" in caplog.text


def test_state_file_of_another_shard_count_is_ignored_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "sessions.json"
    write_state(path, make_token(), 4, {1: _info()})
    with caplog.at_level(logging.WARNING):
        assert read_state(path, make_token(), 8, max_age_s=60) == {}
    assert "written for 4 shards" in caplog.text


def test_state_file_past_the_resume_window_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    write_state(path, make_token(), 4, {1: _info()})
    doc = json.loads(path.read_text())
    doc["saved_at"] -= 1000
    path.write_text(json.dumps(doc))
    assert read_state(path, make_token(), 4, max_age_s=120) == {}


def test_corrupt_state_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    path.write_text("{not json")
    assert read_state(path, make_token(), 4, max_age_s=120) == {}


def test_missing_state_file_means_no_sessions(tmp_path: Path) -> None:
    assert read_state(tmp_path / "nope.json", make_token(), 4, max_age_s=120) == {}

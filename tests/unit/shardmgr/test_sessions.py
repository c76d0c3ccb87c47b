from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from shardmgr.sessions import SessionSaver, SessionStore, read_state, write_state
from tests.supervisor.conftest import make_token
from workers import ipc
from workers.clock import FakeClock


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


class Saves:
    """A save callable that records what it was given; run inline on the loop (no thread),
    so the fake clock alone decides when the saver saves."""

    def __init__(self) -> None:
        self.saved: list[dict[int, ipc.SessionInfo]] = []
        self.event = asyncio.Event()
        self.fail = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def offload(self, fn: Callable[[], None]) -> None:
        self.entered.set()
        await self.release.wait()
        fn()

    def __call__(self, sessions: dict[int, ipc.SessionInfo]) -> None:
        self.event.set()
        if self.fail:
            raise OSError(28, "No space left on device")
        self.saved.append(sessions)

    async def next(self) -> None:
        await asyncio.wait_for(self.event.wait(), 5)
        self.event.clear()


async def _saver(interval_s: float = 2.0) -> tuple[SessionStore, Saves, SessionSaver, FakeClock]:
    store, saves, clock = SessionStore(), Saves(), FakeClock()
    saver = SessionSaver(store, saves, interval_s, clock, offload=saves.offload)
    saver.start()
    return store, saves, saver, clock


async def test_a_session_change_is_saved_without_a_stop() -> None:
    store, saves, saver, _ = await _saver()
    store.on_message(_started("identify", _info(seq=1)))
    await saves.next()
    await saver.stop()
    assert saves.saved == [{0: _info(seq=1)}]


async def test_changes_inside_the_interval_are_saved_once_after_it_with_the_latest() -> None:
    store, saves, saver, clock = await _saver(interval_s=2.0)
    store.on_message(_started("identify", _info(seq=1)))
    await saves.next()
    for seq in (2, 3, 4):
        store.put(0, _info(seq=seq))
    await clock.advance(1.9)
    with pytest.raises(TimeoutError):  # the clock alone can release the next save
        await asyncio.wait_for(saves.event.wait(), 0.5)
    await clock.advance(0.1)
    await saves.next()
    await saver.stop()
    assert saves.saved == [{0: _info(seq=1)}, {0: _info(seq=4)}]


async def test_an_unchanged_checkpoint_is_not_saved_again() -> None:
    store, saves, saver, clock = await _saver()
    store.put(0, _info(seq=5))
    await saves.next()
    await clock.advance(2.0)
    store.put(0, _info(seq=5))  # what each second's stats report does while nothing moves
    assert not store.changed.is_set()
    await saver.stop()
    assert len(saves.saved) == 1


async def test_forgetting_a_session_is_saved_too() -> None:
    store, saves, saver, clock = await _saver()
    store.put(0, _info())
    await saves.next()
    await clock.advance(2.0)
    store.on_message(
        ipc.Reconnecting(
            gen=1, shard_id=0, reason="op9", close_code=None, resume=False, delay_s=0.0
        )
    )
    await saves.next()
    await saver.stop()
    assert saves.saved[-1] == {}


async def test_stop_waits_for_a_save_in_progress() -> None:
    store, saves, saver, _ = await _saver()
    saves.release.clear()
    store.put(0, _info())
    await asyncio.wait_for(saves.entered.wait(), 5)
    stopping = asyncio.ensure_future(saver.stop())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not stopping.done()
    saves.release.set()
    await asyncio.wait_for(stopping, 5)
    assert saves.saved == [{0: _info()}]


async def test_a_failed_save_is_logged_and_the_saver_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, saves, saver, clock = await _saver()
    saves.fail = True
    store.put(0, _info(seq=1))
    await saves.next()
    saves.fail = False
    await clock.advance(2.0)
    store.put(0, _info(seq=2))
    await saves.next()
    await saver.stop()
    assert "cannot save the sessions" in caplog.text
    assert saves.saved == [{0: _info(seq=2)}]

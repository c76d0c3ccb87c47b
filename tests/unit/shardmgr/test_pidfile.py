from __future__ import annotations

import os
from pathlib import Path

import pytest

from shardmgr.errors import UserError
from shardmgr.pidfile import PidFile, read_pid


def test_held_pid_file_names_this_process(tmp_path: Path) -> None:
    pidfile = PidFile(tmp_path / "state" / "supervisor.pid")
    pidfile.acquire()
    try:
        assert read_pid(pidfile.path) == os.getpid()
    finally:
        pidfile.release()


def test_a_second_supervisor_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    first = PidFile(tmp_path / "supervisor.pid")
    first.acquire()
    try:
        with pytest.raises(UserError, match="already running"):
            PidFile(tmp_path / "supervisor.pid").acquire()
    finally:
        first.release()


def test_a_stale_pid_file_does_not_block_a_start(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.pid"
    path.write_text("4194303\n")
    with pytest.raises(UserError, match="stale pid file"):
        read_pid(path)
    pidfile = PidFile(path)
    pidfile.acquire()
    pidfile.release()


def test_release_removes_the_pid_file(tmp_path: Path) -> None:
    pidfile = PidFile(tmp_path / "supervisor.pid")
    pidfile.acquire()
    pidfile.release()
    assert not pidfile.path.exists()


def test_a_state_dir_that_is_a_file_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(UserError, match="--state-dir"):
        PidFile(blocker / "supervisor.pid").acquire()

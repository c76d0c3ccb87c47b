from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shardmgr.errors import UserError
from shardmgr.stop import read_pid, refuse_if_running, remove_pid, write_pid


def test_written_pid_file_names_this_process(tmp_path: Path) -> None:
    path = tmp_path / "state" / "supervisor.pid"
    write_pid(path)
    assert read_pid(path) == os.getpid()


def test_a_live_supervisor_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.pid"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as other:
        try:
            path.write_text(f"{other.pid}\n")
            with pytest.raises(UserError, match="already running"):
                refuse_if_running(path)
        finally:
            other.kill()


def test_a_stale_pid_file_does_not_block_a_start(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.pid"
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    path.write_text(done.stdout)
    refuse_if_running(path)
    with pytest.raises(UserError, match="stale pid file"):
        read_pid(path)


def test_only_our_own_pid_file_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.pid"
    path.write_text("1\n")
    remove_pid(path)
    assert path.exists()
    write_pid(path)
    remove_pid(path)
    assert not path.exists()

"""State files never follow symlinks, and the state directory is the supervisor's alone:
each symlink attack from the red-team check (issue 17, items 14 and 15), and the directory
rules, against the real primitives and their users (pid file, saved sessions)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shardmgr import statefiles
from shardmgr.errors import UserError
from shardmgr.pidfile import PidFile, read_pid
from shardmgr.sessions import read_state, write_state
from tests.multihost.test_kubernetes_example import literal_env, manifest
from tests.supervisor.conftest import make_token
from workers import ipc

VICTIM_TEXT = "precious data the supervisor must never touch\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the state directory that an attacker points a symlink at."""
    path = tmp_path / "victim"
    path.write_text(VICTIM_TEXT)
    return path


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    statefiles.ensure_dir(path)
    return path


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _session() -> dict[int, ipc.SessionInfo]:
    return {0: ipc.SessionInfo(session_id="s", seq=5, resume_url="ws://r")}


def test_a_pid_file_symlink_is_refused_and_its_target_untouched(state: Path, victim: Path) -> None:
    (state / "supervisor.pid").symlink_to(victim)
    with pytest.raises(UserError, match="is a symlink"):
        PidFile(state / "supervisor.pid").acquire()
    assert victim.read_text() == VICTIM_TEXT


def test_stop_does_not_read_a_pid_file_through_a_symlink(state: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pid"
    other.write_text(f"{os.getpid()}\n")
    (state / "supervisor.pid").symlink_to(other)
    with pytest.raises(UserError, match="is a symlink"):
        read_pid(state / "supervisor.pid")


def test_a_new_pid_file_is_owner_only_under_umask_000(state: Path, umask_000: None) -> None:
    pidfile = PidFile(state / "supervisor.pid")
    pidfile.acquire()
    try:
        assert os.stat(pidfile.path).st_mode & 0o777 == 0o600
    finally:
        pidfile.release()


def test_a_symlink_at_the_old_predictable_temp_name_is_not_followed(
    state: Path, victim: Path
) -> None:
    path = state / "sessions.json"
    # The name the supervisor used to write through, and any other pid's version of it.
    for pid in (os.getpid(), os.getpid() + 1):
        (state / f"sessions.json.{pid}.tmp").symlink_to(victim)
    write_state(path, make_token(), 4, _session())
    assert victim.read_text() == VICTIM_TEXT
    assert read_state(path, make_token(), 4, max_age_s=60) == _session()


def test_a_symlink_at_the_sessions_file_is_replaced_not_written_through(
    state: Path, victim: Path
) -> None:
    path = state / "sessions.json"
    path.symlink_to(victim)
    write_state(path, make_token(), 4, _session())
    assert victim.read_text() == VICTIM_TEXT
    assert not path.is_symlink()
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_temporary_names_are_unpredictable_and_left_nowhere(state: Path) -> None:
    seen: set[str] = set()
    real_replace = os.replace

    def spy(src: str, dst: object) -> None:
        seen.add(os.path.basename(src))
        real_replace(src, dst)  # type: ignore[arg-type]

    mp = pytest.MonkeyPatch()
    mp.setattr(os, "replace", spy)
    try:
        for _ in range(3):
            statefiles.write_atomic(state / "sessions.json", b"{}")
    finally:
        mp.undo()
    assert len(seen) == 3
    assert all(name != f"sessions.json.{os.getpid()}.tmp" for name in seen)
    assert sorted(p.name for p in state.iterdir()) == ["sessions.json"]


def test_saved_sessions_are_not_read_through_a_symlink(
    state: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = tmp_path / "planted.json"
    write_state(elsewhere, make_token(), 4, _session())
    (state / "sessions.json").symlink_to(elsewhere)
    assert read_state(state / "sessions.json", make_token(), 4, max_age_s=60) == {}
    assert "is a symlink" in caplog.text
    assert elsewhere.exists()


def test_a_fifo_planted_as_a_state_file_is_refused_without_blocking(state: Path) -> None:
    os.mkfifo(state / "sessions.json")
    started = time.monotonic()
    with pytest.raises(OSError, match="not a regular file"):
        statefiles.read_bytes(state / "sessions.json")
    assert time.monotonic() - started < 1.0


def test_append_files_are_not_opened_through_a_symlink(state: Path, victim: Path) -> None:
    (state / "dead-letters.jsonl").symlink_to(victim)
    with pytest.raises(OSError):
        statefiles.open_append(state / "dead-letters.jsonl")
    assert victim.read_text() == VICTIM_TEXT


def test_the_state_dir_and_its_parents_are_created_0700_under_umask_000(
    tmp_path: Path, umask_000: None
) -> None:
    statefiles.ensure_dir(tmp_path / "a" / "b" / "state")
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "state"):
        assert os.stat(path).st_mode & 0o777 == 0o700, path


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777])
def test_a_state_dir_others_can_write_to_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "shared"
    path.mkdir()
    os.chmod(path, mode)
    with pytest.raises(UserError, match="writable by other users"):
        PidFile(path / "supervisor.pid").acquire()
    assert not (path / "supervisor.pid").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory away")
def test_a_state_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "theirs"
    path.mkdir(mode=0o700)
    os.chown(path, 12345, 12345)
    with pytest.raises(UserError, match="owned by uid 12345"):
        statefiles.ensure_dir(path)


def test_start_with_an_unsafe_state_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHARDMGR_", "DISCORD_"))}
    env["DISCORD_TOKEN"] = make_token()
    proc = subprocess.run(
        [sys.executable, "-m", "shardmgr", "start", "--state-dir", str(shared),
         "--api-base", "http://127.0.0.1:9/api/v10"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "writable by other users" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_kubernetes_example_uses_a_subdirectory_of_its_volume() -> None:
    text = manifest("statefulset.yaml")
    state_dir = literal_env(text)["SHARDMGR_STATE_DIR"]
    mount = text.split("- name: state", 1)[1].split("mountPath:", 1)[1].split()[0]
    assert Path(state_dir).parent == Path(mount)

"""`status`, `presence` and `stop` find the running supervisor through its state directory,
where it records the HTTP address it really bound (port 0 included); the file is the
supervisor's alone (0600, symlinks never followed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shardmgr.addressfile import address_path, read_address, remove_address, write_address
from shardmgr.errors import UserError
from tests.supervisor.cli_proc import run_shardmgr
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected


def test_address_file_is_private_and_read_back(tmp_path: Path) -> None:
    path = write_address(tmp_path, "127.0.0.1:45678")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_address(tmp_path) == "127.0.0.1:45678"
    assert [p.name for p in tmp_path.iterdir()] == ["supervisor.http"]


def test_address_file_replaces_a_planted_symlink_without_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    address_path(tmp_path).symlink_to(victim)
    write_address(tmp_path, "127.0.0.1:1")
    assert victim.read_text() == "precious\n"
    assert not address_path(tmp_path).is_symlink()


def test_a_symlinked_address_file_is_not_read(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("10.0.0.1:80\n")
    address_path(tmp_path).symlink_to(target)
    with pytest.raises(UserError, match="cannot read"):
        read_address(tmp_path)


def test_remove_leaves_a_newer_supervisors_address(tmp_path: Path) -> None:
    write_address(tmp_path, "127.0.0.1:2")
    remove_address(tmp_path, "127.0.0.1:1")
    assert read_address(tmp_path) == "127.0.0.1:2"
    remove_address(tmp_path, "127.0.0.1:2")
    assert read_address(tmp_path) is None


async def test_status_without_a_recorded_address_says_how_to_find_one(tmp_path: Path) -> None:
    code, _out, err = await run_shardmgr("status", "--state-dir", str(tmp_path))
    assert code == 2
    assert err == (
        f"shardmgr: error: no running supervisor found (no address recorded at "
        f"{tmp_path}/supervisor.http); pass the supervisor's --state-dir, or --http HOST:PORT\n"
    )


async def test_status_presence_and_stop_find_the_supervisor_through_the_state_dir(
    tmp_path: Path,
) -> None:
    state = str(tmp_path / "state")
    fake = await FakeGatewayProc.start(shards=2)
    try:
        sup = await SupervisorProc.start(fake, tmp_path)
        try:
            await sup.wait_status(all_connected)
            address_line = next(line for line in sup.stdout if line.startswith("http: "))
            assert address_line.endswith(f"(shardmgr status --state-dir {state})")

            code, out, err = await run_shardmgr("status", "--state-dir", state)
            assert code == 0, err
            assert out.startswith(f"supervisor pid {sup.proc.pid}: 2/2 shards connected")

            code, out, err = await run_shardmgr(
                "presence", "--status", "dnd", "--state-dir", state,
                env={"SHARDMGR_ADMIN_SECRET": "a-secret-here"},
            )  # fmt: skip
            assert code == 2
            assert err == (
                f"shardmgr: error: the supervisor at {sup.url.removeprefix('http://')} was "
                "started without an admin secret: restart it with SHARDMGR_ADMIN_SECRET set "
                "(the same value as here)\n"
            )

            code, out, err = await run_shardmgr("stop", "--state-dir", state)
            assert code == 0, err
            assert out == f"supervisor {sup.proc.pid} stopped\n"
            assert await sup.wait_exit() == 0
            assert read_address(state) is None
        finally:
            await sup.close()
    finally:
        await fake.close()

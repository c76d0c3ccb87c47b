"""``--handler mybot:bot`` works from the folder that holds ``mybot.py`` (the working
directory is on the import path, as with uvicorn and gunicorn), ``--app-dir DIR`` chooses
another folder, for the supervisor and its workers alike, and a module that is not found
says where it was looked for."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from tests.supervisor.cli_proc import run_shardmgr
from tests.supervisor.conftest import make_token
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc

BOT = """\
import os


async def handler(event):
    with open(os.environ["APPBOT_OUT"], "a") as out:
        out.write(f"{event.shard_id} {event.name}\\n")
"""
# The installed console script, whose sys.path[0] is its own bin directory (not the
# working directory, unlike ``python -m shardmgr``): what a user runs.
CONSOLE_SCRIPT = Path(sys.executable).with_name("shardmgr")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(*args: str, cwd: Path, tmp: Path) -> tuple[int, list[str]]:
    env = {
        "DISCORD_TOKEN": make_token(),
        "SHARDMGR_STATE_DIR": str(tmp / "state"),
        "SHARDMGR_DISCOVERY_ATTEMPTS": "1",
    }
    api = f"http://127.0.0.1:{_closed_port()}/api/v10"
    code, _out, err = await run_shardmgr(
        "start", *args, "--api-base", api, env=env, cwd=cwd, program=(str(CONSOLE_SCRIPT),)
    )
    return code, [line for line in err.splitlines() if line.strip()]


async def test_handler_in_the_working_directory_is_imported(tmp_path: Path) -> None:
    (tmp_path / "mybot.py").write_text(BOT)
    code, lines = await _run("--handler", "mybot:handler", cwd=tmp_path, tmp=tmp_path)
    # The handler imported: the start went on to discovery (no API listens here).
    assert code == 2 and "cannot reach" in lines[-1], lines


async def test_missing_handler_module_says_where_it_looked_and_mentions_app_dir(
    tmp_path: Path,
) -> None:
    code, lines = await _run("--handler", "nobot_xyz:handler", cwd=tmp_path, tmp=tmp_path)
    assert code == 2
    assert lines == [
        f"shardmgr: error: --handler nobot_xyz:handler: no module named 'nobot_xyz' in "
        f"{tmp_path} (the app dir) or on the Python path; run from the folder that holds "
        "nobot_xyz.py or nobot_xyz/, or pass --app-dir DIR"
    ]


async def test_app_dir_reaches_the_workers(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "appdir_bot_q7.py").write_text(BOT)
    out = tmp_path / "handled.txt"
    fake = await FakeGatewayProc.start(shards=1)
    try:
        sup = await SupervisorProc.start(
            fake,
            tmp_path,
            "--app-dir", str(app),
            "--handler", "appdir_bot_q7:handler",
            env={"APPBOT_OUT": str(out)},
        )  # fmt: skip
        try:
            await sup.wait_status(lambda _doc: out.exists() and out.read_text() != "")
            assert out.exists() and out.read_text().startswith("0 "), sup.stderr.read_text()
        finally:
            await sup.close()
    finally:
        await fake.close()

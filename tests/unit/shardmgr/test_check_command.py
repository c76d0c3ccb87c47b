"""``shardmgr check``: the canary's handler check, offline. One line, exit 0 or 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.supervisor.cli_proc import run_shardmgr

BOT = (
    "class Bot:\n"
    "    async def start(self):\n"
    "        raise RuntimeError('cannot reach the database')\n"
    "    async def on_message_create(self, event):\n"
    "        pass\n"
    "    async def on_ready(self, event):\n"
    "        pass\n"
    "async def handler(event):\n"
    "    pass\n"
    "def sync_handler(event):\n"
    "    pass\n"
)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "check_bot_w2.py").write_text(BOT)
    (tmp_path / "check_broken_w2.py").write_text("async def handler(event:\n    pass\n")
    return tmp_path


async def check(app: Path, handler: str, *more: str) -> tuple[int, str, str]:
    return await run_shardmgr("check", "--app-dir", str(app), "--handler", handler, *more)


async def test_a_good_handler_object_passes_without_running_start(app: Path) -> None:
    assert await check(app, "check_bot_w2:Bot") == (
        0,
        "ok: check_bot_w2:Bot is an object with on_message_create, on_ready\n",
        "",
    )


async def test_a_good_async_function_passes_its_start_check(app: Path) -> None:
    assert await check(app, "check_bot_w2:handler", "--start") == (
        0,
        "ok: check_bot_w2:handler is an async function; its start() returned\n",
        "",
    )


async def test_a_start_that_raises_fails_with_start(app: Path) -> None:
    assert await check(app, "check_bot_w2:Bot", "--start") == (
        2,
        "",
        "shardmgr: error: handler 'check_bot_w2:Bot': start() raised RuntimeError: "
        "cannot reach the database\n",
    )


@pytest.mark.parametrize(
    ("handler", "line"),
    [
        (
            "check_broken_w2:handler",
            "--handler: handler module 'check_broken_w2' does not import: "
            "SyntaxError: '(' was never closed (check_broken_w2.py, line 1)",
        ),
        (
            "check_bot_w2:nope",
            "--handler: handler 'check_bot_w2:nope': module 'check_bot_w2' has no attribute 'nope'",
        ),
        (
            "check_bot_w2:sync_handler",
            "--handler: check_bot_w2:sync_handler must be an async function "
            "(async def handler(event)) or an object with async on_<event> methods",
        ),
    ],
)
async def test_a_bad_handler_fails_in_one_line(app: Path, handler: str, line: str) -> None:
    assert await check(app, handler) == (2, "", f"shardmgr: error: {line}\n")


async def test_an_app_dir_that_is_not_a_directory_fails(app: Path) -> None:
    assert await run_shardmgr(
        "check", "--app-dir", str(app / "nope"), "--handler", "check_bot_w2:Bot"
    ) == (2, "", f"shardmgr: error: --app-dir {app / 'nope'} is not a directory\n")

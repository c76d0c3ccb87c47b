"""Every user mistake: one line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.supervisor.conftest import make_token

GATEWAY_BOT = {
    "url": "ws://127.0.0.1:9",
    "shards": 2,
    "session_start_limit": {
        "total": 1000,
        "remaining": 1000,
        "reset_after": 1000,
        "max_concurrency": 1,
    },
}


async def _shardmgr(
    *args: str, env: dict[str, str] | None = None, tmp: Path
) -> tuple[int, list[str]]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SHARDMGR_") and k != "DISCORD_TOKEN"
    }
    full_env["SHARDMGR_STATE_DIR"] = str(tmp)
    full_env["SHARDMGR_DISCOVERY_ATTEMPTS"] = "2"
    full_env["SHARDMGR_DISCOVERY_BACKOFF_S"] = "0.05"
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shardmgr",
        *args,
        env=full_env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60.0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = [line for line in err.decode().splitlines() if line.strip()]
    # Log lines (retries) may precede the error; the error itself is the last line.
    return proc.returncode or 0, lines


def _assert_user_error(code: int, lines: list[str], expected: str) -> None:
    assert code == 2, lines
    assert "Traceback" not in "\n".join(lines)
    assert lines and lines[-1].startswith("shardmgr: error: "), lines
    assert expected in lines[-1]


@pytest.fixture
async def api() -> AsyncIterator[dict[str, object]]:
    state: dict[str, object] = {"status": 200, "requests": 0}

    async def gateway_bot(request: web.Request) -> web.Response:
        state["requests"] = int(state["requests"]) + 1  # type: ignore[call-overload]
        if state["status"] == 401:
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        return web.json_response(GATEWAY_BOT)

    app = web.Application()
    app.router.add_get("/api/v10/gateway/bot", gateway_bot)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    state["base"] = f"http://{host}:{port}/api/v10"
    yield state
    await runner.cleanup()


async def test_missing_token_exits_2_with_one_line(tmp_path: Path) -> None:
    code, lines = await _shardmgr("start", tmp=tmp_path)
    _assert_user_error(code, lines, "no token: set DISCORD_TOKEN or pass --token-file")


async def test_malformed_token_exits_2_with_one_line(tmp_path: Path) -> None:
    code, lines = await _shardmgr("start", env={"DISCORD_TOKEN": "not-a-token"}, tmp=tmp_path)
    _assert_user_error(code, lines, "DISCORD_TOKEN is malformed")


async def test_shard_ids_outside_total_shards_exit_2_with_one_line(tmp_path: Path) -> None:
    code, lines = await _shardmgr(
        "start",
        "--total-shards",
        "4",
        "--shard-ids",
        "2-5",
        env={"DISCORD_TOKEN": make_token()},
        tmp=tmp_path,
    )
    _assert_user_error(code, lines, "outside --total-shards 4")


async def test_zero_shards_per_worker_exits_2_with_one_line(tmp_path: Path) -> None:
    code, lines = await _shardmgr(
        "start", "--shards-per-worker", "0", env={"DISCORD_TOKEN": make_token()}, tmp=tmp_path
    )
    _assert_user_error(code, lines, "--shards-per-worker must be at least 1")


async def test_handler_that_does_not_import_exits_2_before_any_worker_starts(
    tmp_path: Path,
) -> None:
    code, lines = await _shardmgr(
        "start",
        "--handler",
        "no_such_module_x:handler",
        env={"DISCORD_TOKEN": make_token()},
        tmp=tmp_path,
    )
    _assert_user_error(code, lines, "--handler")


async def test_unreachable_api_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, lines = await _shardmgr(
        "start",
        "--api-base",
        f"http://127.0.0.1:{port}/api/v10",
        env={"DISCORD_TOKEN": make_token()},
        tmp=tmp_path,
    )
    _assert_user_error(code, lines, "cannot reach")


async def test_rejected_token_exits_2_without_retrying(
    api: dict[str, object], tmp_path: Path
) -> None:
    api["status"] = 401
    code, lines = await _shardmgr(
        "start", "--api-base", str(api["base"]), env={"DISCORD_TOKEN": make_token()}, tmp=tmp_path
    )
    _assert_user_error(code, lines, "the token was rejected")
    assert api["requests"] == 1


async def test_http_port_in_use_exits_2_with_one_line(
    api: dict[str, object], tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, lines = await _shardmgr(
            "start",
            "--api-base",
            str(api["base"]),
            "--http",
            f"127.0.0.1:{port}",
            env={"DISCORD_TOKEN": make_token()},
            tmp=tmp_path,
        )
    _assert_user_error(code, lines, "the port is in use")


async def test_unknown_flag_exits_2_with_one_line(tmp_path: Path) -> None:
    code, lines = await _shardmgr("start", "--shardz", "3", tmp=tmp_path)
    _assert_user_error(code, lines, "unrecognized arguments: --shardz")


async def test_status_without_a_running_supervisor_exits_2(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, lines = await _shardmgr("status", "--http", f"127.0.0.1:{port}", tmp=tmp_path)
    _assert_user_error(code, lines, "no supervisor answers")


async def test_stop_without_a_running_supervisor_exits_2(tmp_path: Path) -> None:
    code, lines = await _shardmgr("stop", tmp=tmp_path)
    _assert_user_error(code, lines, "no running supervisor found")


async def test_state_dir_that_is_a_file_exits_2_before_discovery(
    tmp_path: Path, api: dict[str, object]
) -> None:
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("")
    code, lines = await _shardmgr(
        "start",
        "--api-base",
        str(api["base"]),
        env={"DISCORD_TOKEN": make_token(), "SHARDMGR_STATE_DIR": str(blocker)},
        tmp=tmp_path,
    )
    _assert_user_error(code, lines, "--state-dir")
    assert api["requests"] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["start", "--token", "x"],
        ["start", "--shards-per", "2"],
        ["stop", "--keep"],
        ["status", "--state", "/tmp"],
        ["fake-gateway", "--heartbeat", "1"],
    ],
)
def test_no_parser_takes_an_abbreviated_option(argv: list[str]) -> None:
    from shardmgr.cli import build_parser
    from shardmgr.errors import UserError

    with pytest.raises(UserError, match=f"^unrecognized arguments: {argv[1]}"):
        build_parser().parse_args(argv)


def test_the_worker_entry_point_takes_no_abbreviated_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from workers.__main__ import main as worker_main

    with pytest.raises(SystemExit):
        worker_main(["--ipc-fd", "3", "--ipc", "4"])
    assert "unrecognized arguments: --ipc" in capsys.readouterr().err


async def test_unknown_subcommand_option_has_one_prefix(tmp_path: Path) -> None:
    code, lines = await _shardmgr("status", "--bogus", tmp=tmp_path)
    assert code == 2
    assert lines == ["shardmgr: error: unrecognized arguments: --bogus"]

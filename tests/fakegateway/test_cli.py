"""``shardmgr fake-gateway`` as a process: URL on stdout, serves, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import aiohttp

from tests.fakegateway.client import TOKEN


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shardmgr",
        "fake-gateway",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_cli_prints_url_serves_and_exits_0_on_sigterm():
    proc = await _spawn("--port", "0", "--shards", "3", "--max-concurrency", "2")
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        assert line.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bot {TOKEN}"}
            async with http.get(f"{line}/api/v10/gateway/bot", headers=headers) as r:
                body = await r.json()
            assert body["shards"] == 3
            assert body["session_start_limit"]["max_concurrency"] == 2
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_port_in_use_is_a_one_line_error_exit_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await _spawn("--port", str(port))
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "--port" in lines[0]


async def test_cli_bad_option_value_is_a_one_line_error_exit_2():
    proc = await _spawn("--shards", "0")
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    text = err.decode().strip()
    assert "shards must be at least 1" in text and len(text.splitlines()) == 1

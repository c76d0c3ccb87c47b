"""``make run`` (``python -m shardmgr demo``): the example bot runs, and the curl lines the
demo prints once every shard is connected really make the fake say ``!ping`` and use
``/ping``, and really show the bot's answers."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import shardmgr

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(shardmgr.__file__).resolve().parent.parent


async def read_until(proc: asyncio.subprocess.Process, prefix: str, seen: list[str]) -> str:
    assert proc.stdout is not None
    while True:
        raw = await asyncio.wait_for(proc.stdout.readline(), 90.0)
        assert raw, f"the demo ended before {prefix!r}: {seen}"
        line = raw.decode().rstrip()
        seen.append(line)
        if line.startswith(prefix):
            return line


def curl(line: str) -> tuple[str, str | None]:
    """The URL and the ``-d`` body of a printed ``curl`` line (what the shell would pass)."""
    argv = shlex.split(line)
    assert argv[0] == "curl"
    body = argv[argv.index("-d") + 1] if "-d" in argv else None
    (url,) = [a for a in argv[1:] if a.startswith("http://")]
    return url, body


async def until(http: aiohttp.ClientSession, url: str, found: Any) -> Any:
    deadline = time.monotonic() + 30.0
    while True:
        async with http.get(url) as resp:
            doc = await resp.json()
        if (hit := found(doc)) is not None:
            return hit
        assert time.monotonic() < deadline, f"not found at {url}: {doc}"
        await asyncio.sleep(0.1)


async def test_the_printed_curl_lines_make_the_example_bot_answer(tmp_path: Path) -> None:
    # Only the checkout on the path, started from elsewhere: the demo finds examples/ itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDMGR_")}
    env["PYTHONPATH"] = str(REPO)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shardmgr", "demo", "--shards", "2", "--http", "127.0.0.1:0",
        cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    seen: list[str] = []
    try:
        await read_until(proc, "every shard is connected", seen)
        say_ping = curl((await read_until(proc, "  curl -s -X POST", seen)).strip())
        messages_url, _ = curl((await read_until(proc, "  curl -s ", seen)).strip())
        say_slash = curl((await read_until(proc, "  curl -s -X POST", seen)).strip())
        interactions_url, _ = curl((await read_until(proc, "  curl -s ", seen)).strip())
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            url, body = say_ping
            async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                assert r.status == 200, await r.text()
                ping = await r.json()

            def pong(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
                return next(
                    (
                        m
                        for m in messages
                        if (m.get("message_reference") or {}).get("message_id")
                        == ping["message_id"]
                    ),
                    None,
                )

            assert (await until(http, messages_url, pong))["content"] == "pong"
            url, body = say_slash
            async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                assert r.status == 200, await r.text()
                slash = await r.json()

            def answered(interactions: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
                mine = [i for i in interactions if i["id"] == slash["interaction_id"]]
                return mine[0]["callbacks"] if mine and mine[0]["callbacks"] else None

            (callback,) = await until(http, interactions_url, answered)
            assert callback["data"]["content"] == "pong"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 30.0)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert proc.stdout is not None
    rest = (await proc.stdout.read()).decode()
    assert "demo stopped" in rest, seen

"""With ``--log-json`` every line on stdout and stderr is one JSON object (a container's
merged output parses): the plan, the address line, errors raised before logging is set up,
and whatever a worker writes to stderr outside logging."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.supervisor.cli_proc import run_shardmgr
from tests.supervisor.conftest import make_token
from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected
from workers.logsetup import STDERR_LINE_BYTES, forward_stderr, wrap_stderr_line


def _json_lines(text: str) -> list[dict[str, Any]]:
    docs = []
    for line in text.splitlines():
        doc = json.loads(line)  # raises on any line that is not JSON
        assert isinstance(doc, dict), line
        docs.append(doc)
    return docs


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["start", "--log-json", "--bogus"], {}, "unrecognized arguments: --bogus"),
        (["start", "--log-json"], {"SHARDMGR_SHARDS": "0"}, "SHARDMGR_SHARDS must be at least 1"),
        (
            ["start"],
            {"SHARDMGR_LOG_JSON": "yes"},
            "no token: set DISCORD_TOKEN or pass --token-file PATH",
        ),
    ],
)
async def test_errors_before_logging_is_set_up_are_json(
    args: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    code, out, err = await run_shardmgr(*args, env={"SHARDMGR_STATE_DIR": str(tmp_path), **env})
    assert code == 2 and out == ""
    [doc] = _json_lines(err)
    assert (doc["level"], doc["logger"], doc["msg"]) == ("error", "shardmgr", message)


async def _start_json(
    fake: FakeGatewayProc, tmp: Path, handler: str = "shardmgr.handlers:jsonl"
) -> SupervisorProc:
    """``shardmgr start --log-json``; the harness's start looks for a plain ``http:`` line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDMGR_")}
    env.update(
        DISCORD_TOKEN=fake.token,
        SHARDMGR_STATE_DIR=str(tmp / "state"),
        SHARDMGR_JSONL=str(tmp / "events.jsonl"),
        SHARDMGR_IDENTIFY_WINDOW_S="0.25",
    )
    stderr = tmp / "supervisor.stderr"
    err_fd = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shardmgr", "start", "--log-json",
            "--api-base", fake.api_base, "--http", "127.0.0.1:0",
            "--handler", handler, "--app-dir", str(tmp),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err_fd,
            start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(err_fd)
    assert proc.stdout is not None
    seen: list[str] = []
    while raw := await asyncio.wait_for(proc.stdout.readline(), 60.0):
        seen.append(raw.decode().rstrip("\n"))
        msg = json.loads(seen[-1])["msg"]
        if msg.startswith("http: "):
            return SupervisorProc(proc, msg.split()[1].removesuffix("/metrics"), seen, stderr)
    raise AssertionError(stderr.read_text()[-3000:])


async def test_every_line_of_a_json_start_is_json(tmp_path: Path) -> None:
    fake = await FakeGatewayProc.start(shards=2)
    try:
        sup = await _start_json(fake, tmp_path)
        try:
            await sup.wait_status(all_connected)
        finally:
            await sup.close()
    finally:
        await fake.close()
    out = _json_lines("\n".join(sup.stdout))
    assert out[0]["msg"].startswith("plan: 2 of 2 shards")
    assert any(doc["msg"].startswith("http: http://127.0.0.1:") for doc in out)
    err = _json_lines(sup.stderr.read_text())
    assert any(doc["msg"] == "shard connected" for doc in err)
    assert any(doc["msg"] == "supervisor stopped" for doc in err)


async def test_what_a_worker_prints_outside_logging_is_json_too(tmp_path: Path) -> None:
    (tmp_path / "printing_bot.py").write_text(
        "import sys\n"
        "class Bot:\n"
        "    async def start(self):\n"
        "        print('plain text from the handler', file=sys.stderr, flush=True)\n"
        "        print('plain stdout from the handler', flush=True)\n"
        "    async def on_ready(self, event):\n"
        "        pass\n"
    )
    fake = await FakeGatewayProc.start(shards=2)
    try:
        sup = await _start_json(fake, tmp_path, handler="printing_bot:Bot")
        try:
            await sup.wait_status(all_connected)
        finally:
            await sup.close()
    finally:
        await fake.close()
    err = _json_lines(sup.stderr.read_text())
    printed = [doc for doc in err if doc["logger"] == "workers.stderr"]
    assert {doc["msg"] for doc in printed} == {
        "plain text from the handler",
        "plain stdout from the handler",
    }
    assert all(isinstance(doc["worker"], int) for doc in printed)


def test_a_worker_stderr_line_is_wrapped_as_json() -> None:
    doc = json.loads(wrap_stderr_line(b'Traceback (most recent call last): "x"\n', 3))
    assert doc["msg"] == 'Traceback (most recent call last): "x"'
    assert (doc["level"], doc["logger"], doc["worker"]) == ("warning", "workers.stderr", 3)


def test_a_worker_json_log_line_passes_through_unchanged() -> None:
    line = '{"ts": "t", "level": "info", "logger": "workers", "msg": "hi"}'
    assert wrap_stderr_line(line.encode() + b"\n", 0) == line


def test_a_token_in_worker_stderr_is_redacted() -> None:
    token = make_token()
    assert token not in wrap_stderr_line(f"oops {token}\n".encode(), 0)


async def test_forwarded_worker_stderr_is_json_and_bounded_per_line() -> None:
    reader = asyncio.StreamReader(limit=1024)
    reader.feed_data(b"first\n" + b"x" * (3 * 1024) + b"\nlast without newline")
    reader.feed_eof()
    out = io.StringIO()
    await forward_stderr(reader, 5, as_json=True, out=out)
    docs = _json_lines(out.getvalue())
    assert docs[0]["msg"] == "first" and docs[-1]["msg"] == "last without newline"
    assert all(doc["worker"] == 5 for doc in docs)
    assert all(len(doc["msg"]) <= max(STDERR_LINE_BYTES, 1024) for doc in docs)
    assert "".join(doc["msg"] for doc in docs[1:-1]) == "x" * (3 * 1024)

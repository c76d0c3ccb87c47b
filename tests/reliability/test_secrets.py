"""The token, and the admin secret, never leave the processes that hold them.

One module-scoped run starts the whole system (fake gateway, ``shardmgr start`` at DEBUG with
two workers) with a recognisable token, then drives the paths that tend to leak: a handler
whose exception text and log line carry the token, bad payloads, server closes, a cut TCP
connection, refused and accepted ``POST /restart``, a ``kill -9`` of a worker, and a stop that
saves sessions. Everything observable is collected; each test checks one exposure.

The run sets allow_core_dumps: the supervisor and workers are otherwise non-dumpable, and a
non-dumpable process's /proc/PID/environ is readable by root only, yet every live worker's
environment is read here (what a worker inherits does not depend on that setting;
test_core_dumps checks the default).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import pytest

from shardmgr.config import load_settings, parse_http_address
from shardmgr.httpapi import HttpApi
from tests.reliability.procs import (
    SECRET_TOKEN,
    base_env,
    cmdline,
    fake_gateway,
    kill_marked,
    marked_pids,
    new_marker,
    python_argv,
)

pytestmark = pytest.mark.integration

ADMIN_SECRET = "AdminCanary-7c1d2e3f4a5b"
CONNECT_TIMEOUT_S = 45.0

LEAKY_BOT = f'''
import logging

TOKEN = "{SECRET_TOKEN}"
log = logging.getLogger("leaky_bot")
# The bot's own handler and format: shardmgr's formatter never sees what this one prints.
_own = logging.StreamHandler()
_own.setFormatter(logging.Formatter("leaky_bot own handler: %(message)s"))
log.addHandler(_own)


class Bot:
    def __init__(self):
        self.raised = 0

    async def on_message_create(self, event):
        if self.raised < 2:
            self.raised += 1
            log.warning("calling http://127.0.0.1:1/api/v10/x?token=%s with Bot %s", TOKEN, TOKEN)
            raise RuntimeError("handler failed while holding " + TOKEN)


bot = Bot()
'''


@dataclass
class Observed:
    """Everything the run exposed, gathered before the system was torn down."""

    logs: str = ""
    http_bodies: dict[str, bytes] = field(default_factory=dict)
    cmdlines: dict[int, bytes] = field(default_factory=dict)
    environs: dict[int, bytes] = field(default_factory=dict)
    files: dict[Path, bytes] = field(default_factory=dict)
    restart_codes: dict[str, int] = field(default_factory=dict)
    listen_addresses: list[str] = field(default_factory=list)
    worker_pids: set[int] = field(default_factory=set)
    live_worker_pids: set[int] = field(default_factory=set)
    supervisor_pid: int = 0
    exit_code: int | None = None


def listening_addresses(port: int) -> list[str]:
    """Local addresses of LISTEN sockets on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            next(fh)
            for line in fh:
                parts = line.split()
                local, state = parts[1], parts[3]
                addr, port_hex = local.rsplit(":", 1)
                if state == "0A" and int(port_hex, 16) == port:
                    found.append(_address(addr))
    return found


def _address(hex_addr: str) -> str:
    if len(hex_addr) == 8:
        return ".".join(str(b) for b in reversed(bytes.fromhex(hex_addr)))
    words = [bytes.fromhex(hex_addr[i : i + 8])[::-1].hex() for i in range(0, 32, 8)]
    return ":".join("".join(words)[i : i + 4] for i in range(0, 32, 4))


async def _wait(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def scenario(
    tmp: Path, marker: str, fake: tuple[str, int], out: Observed, log_file: BinaryIO
) -> list[bytes]:
    """Run the system through its paces; returns what the supervisor printed on stdout."""
    fake_url, fake_pid = fake
    state = tmp / "state"
    env = base_env(
        marker,
        DISCORD_TOKEN=SECRET_TOKEN,
        SHARDMGR_ADMIN_SECRET=ADMIN_SECRET,
        SHARDMGR_JSONL=str(tmp / "events.jsonl"),
        SHARDMGR_ALLOW_CORE_DUMPS="true",
    )
    env["PYTHONPATH"] = f"{tmp / 'bot'}{os.pathsep}{env['PYTHONPATH']}"
    proc = await asyncio.create_subprocess_exec(
        *python_argv(marker),
        "-m",
        "shardmgr",
        "start",
        "--shards",
        "auto",
        "--workers",
        "2",
        "--api-base",
        f"{fake_url}/api/v10",
        "--http",
        "127.0.0.1:0",
        "--handler",
        "leaky_bot:bot",
        "--log-level",
        "DEBUG",
        "--identify-window",
        "0.2",
        "--state-dir",
        str(state),
        "--keep-sessions",
        env=env,
        cwd=tmp,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=log_file,
    )
    out.supervisor_pid = proc.pid
    stdout_lines: list[bytes] = []
    try:
        assert proc.stdout is not None
        api = ""
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            while not api:
                line = await proc.stdout.readline()
                if not line:
                    raise AssertionError("supervisor exited before announcing its HTTP port")
                stdout_lines.append(line)
                match = re.search(rb"(http://127\.0\.0\.1:\d+)/metrics", line)
                if match:
                    api = match.group(1).decode()
        drain = asyncio.get_running_loop().create_task(_collect(proc.stdout, stdout_lines))
        await drive(api, fake_url, out)
        out.listen_addresses = listening_addresses(int(api.rsplit(":", 1)[1]))
        out.cmdlines[proc.pid] = cmdline(proc.pid)
        for pid in marked_pids(marker):
            # the fake gateway plays Discord's side: it is given the token to check against
            if pid != fake_pid:
                out.cmdlines.setdefault(pid, cmdline(pid))
                if pid != proc.pid:  # the supervisor was given the token in its environment
                    out.environs[pid] = _read_environ(pid)
        proc.send_signal(signal.SIGTERM)
        out.exit_code = await asyncio.wait_for(proc.wait(), 30)
        await drain
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return stdout_lines


def _read_environ(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        return fh.read()


async def _collect(stream: asyncio.StreamReader, into: list[bytes]) -> None:
    while line := await stream.readline():
        into.append(line)


async def drive(api: str, fake: str, out: Observed) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def status() -> dict[str, Any]:
            async with http.get(api + "/status") as resp:
                doc: dict[str, Any] = await resp.json()
                return doc

        async def all_connected() -> bool:
            shards = (await status())["shards"]
            return bool(shards) and all(s["state"] == "connected" for s in shards)

        async def fault(body: dict[str, Any]) -> None:
            async with http.post(fake + "/_fake/faults", json=body) as resp:
                assert resp.status < 400, await resp.text()
            await _wait(all_connected, CONNECT_TIMEOUT_S, f"recovery from {body}")

        await _wait(all_connected, CONNECT_TIMEOUT_S, "all shards connected")
        for body in (
            {"kind": "bad_json", "shard_id": 0},
            {"kind": "close", "code": 4000, "shard_id": 1},
            {"kind": "cut", "shard_id": 0},
            {"kind": "invalid_session", "resumable": False, "shard_id": 1},
        ):
            await fault(body)

        for name, headers in (
            ("none", {}),
            ("wrong", {"Authorization": "Bearer not-the-secret"}),
            ("basic", {"Authorization": f"Basic {ADMIN_SECRET}"}),
            ("right", {"Authorization": f"Bearer {ADMIN_SECRET}"}),
        ):
            async with http.post(api + "/restart", headers=headers) as resp:
                out.restart_codes[name] = resp.status
        async with http.get(api + "/restart") as resp:
            out.restart_codes["get"] = resp.status
        await _wait(
            lambda: _restart_done(status), CONNECT_TIMEOUT_S, "the rolling restart to finish"
        )
        await _wait(all_connected, CONNECT_TIMEOUT_S, "reconnect after the rolling restart")

        pids = [w["pid"] for w in (await status())["workers"] if w.get("pid")]
        out.worker_pids.update(pids)
        os.kill(pids[0], signal.SIGKILL)
        await _wait(
            lambda: _replaced(status, pids[0]), CONNECT_TIMEOUT_S, "the killed worker's replacement"
        )
        await _wait(all_connected, CONNECT_TIMEOUT_S, "reconnect after kill -9")
        out.live_worker_pids = {w["pid"] for w in (await status())["workers"] if w.get("pid")}
        out.worker_pids.update(out.live_worker_pids)

        for path in ("/metrics", "/status", "/healthz", "/readyz"):
            async with http.get(api + path) as resp:
                out.http_bodies[path] = await resp.read()


async def _restart_done(status: Any) -> bool:
    doc = await status()
    return not doc["supervisor"].get("rolling_restart")


async def _replaced(status: Any, old_pid: int) -> bool:
    doc = await status()
    pids = [w.get("pid") for w in doc["workers"]]
    return old_pid not in pids and all(pids)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("secrets")
    (tmp / "bot").mkdir()
    (tmp / "bot" / "leaky_bot.py").write_text(LEAKY_BOT)
    marker = new_marker()
    out = Observed()
    try:
        log_path = tmp / "supervisor.log"
        with (
            fake_gateway(tmp, marker, shards=2, extra=["--event-rate", "20"]) as (url, gateway),
            open(log_path, "wb") as log_file,
        ):
            stdout = asyncio.run(scenario(tmp, marker, (url, gateway.pid), out, log_file))
        out.logs = log_path.read_text(errors="replace") + b"".join(stdout).decode(errors="replace")
        for path in tmp.rglob("*"):
            if path.is_file() and path.relative_to(tmp).parts[0] != "bot":
                out.files[path] = path.read_bytes()
        yield out
    finally:
        kill_marked(marker)


def test_the_leaky_paths_were_exercised(observed: Observed) -> None:
    """Guards the other tests against passing vacuously."""
    assert "RuntimeError" in observed.logs
    assert "[REDACTED]" in observed.logs
    assert "leaky_bot own handler: calling" in observed.logs  # the bot's handler printed
    assert " debug " in observed.logs
    assert observed.exit_code == 0
    assert len(observed.worker_pids) >= 3  # two workers, then at least one replacement


def test_token_is_in_no_log_line_even_at_debug(observed: Observed) -> None:
    assert SECRET_TOKEN not in observed.logs
    # no fragment either: the hmac part alone is as good as the token to an attacker
    assert SECRET_TOKEN.split(".")[2] not in observed.logs


def test_token_is_not_in_metrics_or_status(observed: Observed) -> None:
    assert set(observed.http_bodies) == {"/metrics", "/status", "/healthz", "/readyz"}
    for path, body in observed.http_bodies.items():
        assert SECRET_TOKEN.encode() not in body, path
        assert ADMIN_SECRET.encode() not in body, path


def test_token_is_on_no_process_command_line(observed: Observed) -> None:
    assert observed.supervisor_pid in observed.cmdlines
    assert len(observed.cmdlines) >= 3  # the supervisor and its two live workers
    assert observed.live_worker_pids <= set(observed.cmdlines)
    for pid, line in observed.cmdlines.items():
        assert SECRET_TOKEN.encode() not in line, (pid, line)
        assert ADMIN_SECRET.encode() not in line, (pid, line)


def test_token_is_in_no_live_worker_environment(observed: Observed) -> None:
    # Every worker the supervisor reported at the end was read, and each read found a
    # real environment: the check cannot pass by reading nothing.
    assert observed.live_worker_pids
    assert observed.live_worker_pids <= set(observed.environs)
    for pid, env in observed.environs.items():
        assert b"PATH=" in env, pid
        assert SECRET_TOKEN.encode() not in env, pid
        assert ADMIN_SECRET.encode() not in env, pid
        assert b"DISCORD_TOKEN=" not in env, pid


def test_token_is_in_no_file_the_project_writes(observed: Observed) -> None:
    names = {p.name for p in observed.files}
    assert "sessions.json" in names  # --keep-sessions saved state on SIGTERM
    for path, data in observed.files.items():
        assert SECRET_TOKEN.encode() not in data, path
        assert ADMIN_SECRET.encode() not in data, path


def test_admin_secret_is_in_no_log_line(observed: Observed) -> None:
    assert ADMIN_SECRET not in observed.logs


def test_http_port_listens_on_loopback_only(observed: Observed) -> None:
    assert observed.listen_addresses
    assert set(observed.listen_addresses) <= {"127.0.0.1"}


def test_restart_refuses_requests_without_the_admin_secret(observed: Observed) -> None:
    assert observed.restart_codes["none"] in (401, 403)
    assert observed.restart_codes["wrong"] in (401, 403)
    assert observed.restart_codes["basic"] in (401, 403)
    assert observed.restart_codes["right"] == 202


def test_restart_is_not_reachable_with_get(observed: Observed) -> None:
    assert observed.restart_codes["get"] == 405


def test_default_http_address_is_loopback() -> None:
    settings = load_settings({}, env={})
    host, _ = parse_http_address(settings.http)
    assert host in ("127.0.0.1", "::1", "localhost")


class _Source:
    def __init__(self) -> None:
        self.restarts = 0

    def status(self) -> dict[str, Any]:
        return {"supervisor": {}, "workers": [], "shards": []}

    def healthy(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def request_rolling_restart(self) -> bool:
        self.restarts += 1
        return True


class _Metrics:
    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain"


async def test_restart_is_refused_when_no_admin_secret_is_configured() -> None:
    source = _Source()
    api = HttpApi(source, _Metrics(), admin_secret=None)
    await api.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
                async with http.post(api.url + "/restart", headers=headers) as resp:
                    assert resp.status == 403
    finally:
        await api.stop()
    assert source.restarts == 0

"""``make run``: a local fake gateway with live traffic, and ``shardmgr start --shards auto``
against it, until Ctrl-C stops both."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import signal
import socket
import sys
import tempfile

from shardmgr.config import load_settings, parse_http_address
from shardmgr.errors import UserError
from workers import logsetup, redact

MAX_CONCURRENCY = 4
IDENTIFY_WINDOW_S = 2.0
HEARTBEAT_INTERVAL_S = 5.0
EVENT_RATE = 50.0
FAKE_TOKEN_ENV = "SHARDMGR_FAKE_TOKEN"


def demo_token() -> str:
    """A token of Discord's shape (base64 of a snowflake . timestamp . hmac) that only the
    local fake gateway accepts."""
    bot_id = str(1_100_000_000_000_000_000 + secrets.randbelow(10**17)).encode()
    head = base64.urlsafe_b64encode(bot_id).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(5)}.{secrets.token_urlsafe(27)}"


async def _start_fake(shards: int, token: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shardmgr",
        "fake-gateway",
        "--port",
        "0",
        "--shards",
        str(shards),
        "--max-concurrency",
        str(MAX_CONCURRENCY),
        "--identify-window",
        str(IDENTIFY_WINDOW_S),
        "--heartbeat-interval",
        str(HEARTBEAT_INTERVAL_S),
        "--event-rate",
        str(EVENT_RATE),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        # Ctrl-C goes to the demo only; the demo then stops the fake in order.
        start_new_session=True,
        # The token travels in the environment: on argv, `ps` would show it.
        env={**os.environ, FAKE_TOKEN_ENV: token},
    )
    try:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30.0)
        except TimeoutError:
            line = b""
        url = line.decode().strip()
        if not url.startswith("http://"):
            raise UserError("the fake gateway did not start (see its messages above)")
    except BaseException:
        # Cancelled (Ctrl-C) or failed: never leave the fake running on its own.
        await _stop_fake(proc)
        raise
    return proc, url


async def _drain(stream: asyncio.StreamReader | None) -> None:
    """Keep the fake's stdout pipe flowing so it never blocks on a full pipe."""
    if stream is None:
        return
    while await stream.readline():
        pass


async def _stop_fake(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _free_or_any(http: str) -> str:
    """The demo should start even when 9191 is taken (say, by a real supervisor)."""
    host, port = parse_http_address(http)
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return f"{host}:0"
    return http


async def _demo(shards: int, http: str) -> int:
    from shardmgr.start import run_supervisor

    http = _free_or_any(http)

    token = demo_token()
    redact.add_secret(token)
    fake, url = await _start_fake(shards, token)
    drain = asyncio.create_task(_drain(fake.stdout))
    print(f"fake gateway: {url} (ground truth at {url}/_fake/stats)", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="shardmgr-demo-") as state_dir:
            settings = load_settings(
                {
                    "shards": "auto",
                    "api_base": url + "/api/v10",
                    "http": http,
                    "identify_window_s": IDENTIFY_WINDOW_S,
                    "state_dir": state_dir,
                },
                env={k: v for k, v in os.environ.items() if k == "SHARDMGR_LOG_LEVEL"},
            )
            logsetup.configure(settings.log_level, settings.log_json)
            print("running until Ctrl-C", flush=True)
            return await run_supervisor(settings, token)
    finally:
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
        await _stop_fake(fake)
        print("demo stopped", flush=True)


def main(*, shards: int = 16, http: str = "127.0.0.1:9191") -> int:
    try:
        return asyncio.run(_demo(shards, http))
    except KeyboardInterrupt:
        return 130

"""``make run``: a local fake gateway with live traffic, and ``shardmgr start --shards auto``
against it, until Ctrl-C stops both."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import socket
import tempfile

from fakegateway import FakeConfig, FakeProcess, FakeStartError, spawn_async
from shardmgr.config import load_settings, parse_http_address
from shardmgr.errors import UserError
from workers import logsetup, redact

MAX_CONCURRENCY = 4
IDENTIFY_WINDOW_S = 2.0
HEARTBEAT_INTERVAL_S = 5.0
EVENT_RATE = 50.0


def demo_token() -> str:
    """A token of Discord's shape (base64 of a snowflake . timestamp . hmac) that only the
    local fake gateway accepts."""
    bot_id = str(1_100_000_000_000_000_000 + secrets.randbelow(10**17)).encode()
    head = base64.urlsafe_b64encode(bot_id).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(5)}.{secrets.token_urlsafe(27)}"


async def _start_fake(shards: int, token: str) -> FakeProcess:
    config = FakeConfig(
        shards=shards,
        max_concurrency=MAX_CONCURRENCY,
        identify_window_s=IDENTIFY_WINDOW_S,
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
        event_rate=EVENT_RATE,
        token=token,
    )
    try:
        # Its own session: Ctrl-C goes to the demo only; the demo then stops the fake in
        # order (a cancelled start stops it too).
        return await spawn_async(config)
    except FakeStartError as exc:
        raise UserError(f"the fake gateway did not start ({exc}; see its messages above)") from None


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
    fake = await _start_fake(shards, token)
    url = fake.url
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
        await fake.stop_async(5.0)
        print("demo stopped", flush=True)


def main(*, shards: int = 16, http: str = "127.0.0.1:9191") -> int:
    try:
        return asyncio.run(_demo(shards, http))
    except KeyboardInterrupt:
        return 130

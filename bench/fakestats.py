"""Reading the fake gateway's ground truth (``/_fake/stats``, ``/_fake/sessions``) and
steering its traffic, for the process benchmarks."""

from __future__ import annotations

from typing import Any

from bench.procs import BENCH_TOKEN, http_json, http_post, wait_for
from fakegateway.config import FakeConfig
from fakegateway.state import FakeState
from workers.clock import REAL_CLOCK


def stats(api: str) -> dict[str, Any]:
    doc: dict[str, Any] = http_json(f"{api}/_fake/stats", timeout=10)
    return doc


def sessions(api: str) -> list[dict[str, Any]]:
    doc: list[dict[str, Any]] = http_json(f"{api}/_fake/sessions", timeout=10)
    return doc


def identifies(doc: dict[str, Any]) -> int:
    """Successful identifies (each one spends a session start)."""
    return int(doc["identifies"])


def identify_violations(doc: dict[str, Any]) -> int:
    """Identifies that broke the max_concurrency window (answered with op 9)."""
    return int(doc["identify_violations"])


def wait_guilds_sent(api: str, shards: int, timeout: float) -> None:
    """With no live traffic, every shard's READY and GUILD_CREATEs have been sent once the
    dispatch count reaches shards + guilds."""
    guilds = FakeConfig(shards=shards).guild_count

    def done() -> bool | None:
        return True if stats(api)["dispatches_sent"] >= shards + guilds else None

    wait_for("every READY and GUILD_CREATE sent", done, timeout, interval=0.1)


def shard_zero_startup(shards: int) -> list[bytes]:
    """READY and every GUILD_CREATE body that shard 0 receives from a fake gateway started
    with ``--shards shards`` (its world is seeded, so these are the same byte strings)."""
    config = FakeConfig(shards=shards, token=BENCH_TOKEN)
    state = FakeState(config, REAL_CLOCK)
    bot = state.bot_user(config.configured_bot_id)
    guilds = state.world.guilds_for(0, shards)
    if not guilds:
        raise RuntimeError("shard 0 of the fake gateway has no guilds")
    ready = state.world.ready(
        bot=bot,
        session_id="0" * 32,
        resume_gateway_url="ws://127.0.0.1:1",
        guilds=guilds,
        shard=[0, shards],
    )
    return [ready, *(state.world.guild_create(g, bot, 250) for g in guilds)]


def gateway_ws_url(api: str) -> str:
    """The websocket URL the fake gateway hands out (``GET /api/v10/gateway``)."""
    doc = http_json(f"{api}/api/v10/gateway", timeout=10)
    return str(doc["url"])


def set_event_rate(api: str, rate: float) -> None:
    """Change the live traffic (dispatches per second per connected shard)."""
    status, body = http_post(f"{api}/_fake/traffic", {"event_rate": rate})
    if status != 200:
        raise RuntimeError(f"POST /_fake/traffic answered {status}: {body[:200]!r}")

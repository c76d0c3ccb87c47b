"""``/readyz`` says when the sink is not writing events, even with every shard connected."""

from __future__ import annotations

import aiohttp

from shardmgr.httpapi import HttpApi
from tests.commands.test_routes import Source


class NoMetrics:
    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain"


class Sink:
    writing = True

    def why_not_writing(self) -> str:
        return "stream discord:events is full: consumer group 'bot' has not acknowledged"


async def readyz(sink: Sink) -> tuple[int, str]:
    api = HttpApi(Source([]), NoMetrics(), sink=sink)
    await api.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{api.url}/readyz") as response:
            return response.status, await response.text()
    finally:
        await api.stop()


async def test_readyz_is_503_and_says_why_while_the_sink_is_not_writing() -> None:
    sink = Sink()
    assert await readyz(sink) == (200, "ready\n")
    sink.writing = False
    status, text = await readyz(sink)
    assert status == 503
    assert text.startswith("not ready: no events written: stream discord:events is full")

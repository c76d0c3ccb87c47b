"""``POST /presence`` and ``POST /shards/{id}/send`` on the supervisor's HTTP port, against
a recording command source: the secret, the validation, and what reaches the supervisor."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from shardmgr.httpapi import CommandQueueFull, HttpApi

SECRET = "s3cret-for-tests"
AUTH = {"Authorization": f"Bearer {SECRET}"}


class Source:
    def __init__(self, shards: list[int], up: bool = True) -> None:
        self.shards = shards
        self.up = up
        self.sent: list[tuple[int, int, Any]] = []

    def status(self) -> dict[str, Any]:
        return {}

    def healthy(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def request_rolling_restart(self) -> bool:
        return True

    def runs_shard(self, shard_id: int) -> bool:
        return shard_id in self.shards

    async def send_command(self, shard_id: int, op: int, d: bytes) -> bool:
        if not self.up:
            return False
        self.sent.append((shard_id, op, json.loads(d)))
        return True

    async def broadcast_command(self, op: int, d: bytes) -> tuple[int, int]:
        sent = [await self.send_command(sid, op, d) for sid in self.shards]
        return sum(sent), len(self.shards)


class NoMetrics:
    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain"


@pytest.fixture
def source() -> Source:
    return Source([0, 1, 2])


@pytest.fixture
async def client(source: Source) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    api = HttpApi(source, NoMetrics(), admin_secret=SECRET)
    await api.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield session, api.url
    finally:
        await api.stop()


async def post(
    client: tuple[aiohttp.ClientSession, str], path: str, body: Any, headers: Any = AUTH
) -> tuple[int, dict[str, Any]]:
    session, url = client
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(url + path, data=data, headers=headers) as resp:
        return resp.status, await resp.json()


PRESENCE = {"status": "dnd", "activities": [{"name": "maintenance", "type": 0}], "afk": False}


async def test_presence_without_the_secret_is_refused(client: Any, source: Source) -> None:
    status, doc = await post(client, "/presence", PRESENCE, headers={})
    assert (status, doc) == (403, {"error": "bad or missing admin secret"})
    assert source.sent == []


async def test_send_with_a_wrong_secret_is_refused(client: Any, source: Source) -> None:
    wrong = {"Authorization": "Bearer nope"}
    status, _ = await post(client, "/shards/0/send", {"op": 3, "d": None}, headers=wrong)
    assert status == 403
    assert source.sent == []


async def test_routes_are_disabled_without_an_admin_secret(source: Source) -> None:
    api = HttpApi(source, NoMetrics(), admin_secret=None)
    await api.start("127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(api.url + "/presence", json=PRESENCE, headers=AUTH) as resp,
        ):
            assert resp.status == 403
            assert "SHARDMGR_ADMIN_SECRET" in (await resp.json())["error"]
    finally:
        await api.stop()


async def test_presence_is_sent_to_every_shard(client: Any, source: Source) -> None:
    status, doc = await post(client, "/presence", PRESENCE)
    assert status == 202
    assert doc == {"presence": "dnd", "shards": 3, "planned": 3}
    expected = {
        "status": "dnd",
        "activities": [{"name": "maintenance", "type": 0}],
        "afk": False,
        "since": None,
    }
    assert source.sent == [(sid, 3, expected) for sid in (0, 1, 2)]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        ({"status": "busy"}, "status must be one of"),
        ({"status": "dnd", "activities": [{"type": 0}]}, "bad request body"),
        ({"status": "dnd", "extra": 1}, "bad request body"),
        ({"status": "dnd", "activities": [{"name": "x", "type": 9}]}, "activity type must be"),
    ],
)
async def test_bad_presence_is_400_with_one_line(
    client: Any, source: Source, body: Any, fragment: str
) -> None:
    status, doc = await post(client, "/presence", body)
    assert status == 400
    assert fragment in doc["error"] and "\n" not in doc["error"]
    assert source.sent == []


async def test_send_reaches_the_shard(client: Any, source: Source) -> None:
    d = {"guild_id": "1", "query": "", "limit": 0}
    status, doc = await post(client, "/shards/2/send", {"op": 8, "d": d})
    assert (status, doc) == (202, {"shard": 2, "op": 8})
    assert source.sent == [(2, 8, d)]


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/shards/7/send", {"op": 3, "d": None}, "shard 7 is not run by this supervisor"),
        ("/shards/x/send", {"op": 3, "d": None}, "shard id must be a number"),
        ("/shards/0/send", {"op": 0, "d": None}, "op 0 is not a client opcode"),
        ("/shards/0/send", {"op": 11, "d": None}, "op 11 is not a client opcode"),
        ("/shards/0/send", {"op": 2, "d": {}}, "managed by the shard itself"),
        ("/shards/0/send", {"d": {}}, "bad request body"),
        ("/shards/0/send", b'{"op": 3,', "not valid JSON"),
        ("/shards/0/send", {"op": 3, "d": "x" * 5000}, "exceeds the gateway's 4096"),
    ],
)
async def test_bad_send_is_400_with_one_line(
    client: Any, source: Source, path: str, body: Any, fragment: str
) -> None:
    status, doc = await post(client, path, body)
    assert status == 400
    assert fragment in doc["error"] and "\n" not in doc["error"]
    assert source.sent == []


async def test_send_to_a_shard_whose_worker_is_down_is_503(source: Source) -> None:
    source.up = False
    api = HttpApi(source, NoMetrics(), admin_secret=SECRET)
    await api.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            url = api.url + "/shards/0/send"
            async with session.post(url, json={"op": 3, "d": None}, headers=AUTH) as resp:
                assert resp.status == 503
    finally:
        await api.stop()


async def test_send_to_a_full_command_queue_is_429_with_retry_after() -> None:
    class Full(Source):
        async def send_command(self, shard_id: int, op: int, d: bytes) -> bool:
            raise CommandQueueFull(0.5)

    api = HttpApi(Full([0]), NoMetrics(), admin_secret=SECRET)
    await api.start("127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                api.url + "/shards/0/send", json={"op": 3, "d": None}, headers=AUTH
            ) as resp,
        ):
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "1"
            assert "retry in 1 s" in (await resp.json())["error"]
    finally:
        await api.stop()

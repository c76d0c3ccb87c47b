"""Calling the fake's REST side from tests: one request, its status, headers and JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp

from fakegateway import FakeGateway
from fakegateway.world import Guild
from tests.unit.fakegateway.client import TOKEN

CONTENT_INTENTS = 53575421 | (1 << 15)


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


async def call(
    http: aiohttp.ClientSession,
    fg: FakeGateway,
    method: str,
    path: str,
    *,
    json: Any = None,
    token: str | None = TOKEN,
    data: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bot {token}"
    url = (fg.base_url if path.startswith("/_fake") else fg.api_base) + path
    async with http.request(method, url, json=json, data=data, headers=headers) as r:
        raw = await r.read()
        body = await r.json(content_type=None) if raw else None
        return Answer(r.status, dict(r.headers), body)


def guild_of_shard(fg: FakeGateway, shard_id: int, num_shards: int) -> Guild:
    return next(g for g in fg.state.world.guilds_for(shard_id, num_shards) if not g.unavailable)

"""A small Discord-shaped REST server for the client's tests (127.0.0.1, port 0).

It enforces what Discord does: a global limit (sliding second, interaction routes exempt),
a per-channel message bucket with ``X-RateLimit-*`` headers, 401 without the token; and it
counts like the fake gateway's ``GET /_fake/rest``: ``requests``, ``by_route``,
``rate_limited`` (429s served), ``limit_violations`` (arrivals on an exhausted bucket),
``global_violations`` (arrivals over the global limit), ``invalid_requests``. ``script``
queues canned answers for one ``METHOD /path`` (faults)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
MESSAGE_BUCKET = "f00dfeedmessages"
PROXIED = ("/gateway", "/gateway/bot", "/oauth2/applications/@me", "/applications/@me")


@dataclass
class Canned:
    status: int
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)


class DiscordServer:
    def __init__(
        self,
        global_limit: int = 50,
        bucket_size: int = 5,
        bucket_window_s: float = 5.0,
        *,
        token: str = TOKEN,
        upstream: str | None = None,
    ) -> None:
        self.token = token
        # discovery and the bot's own objects come from here (a fake gateway), so real
        # shards can connect while this server answers the REST routes under test
        self.upstream = upstream
        self.global_limit = global_limit
        self.bucket_size = bucket_size
        self.bucket_window_s = bucket_window_s
        self.counters: dict[str, Any] = {
            "requests": 0,
            "by_route": collections.Counter(),
            "rate_limited": 0,
            "limit_violations": 0,
            "global_violations": 0,
            "invalid_requests": 0,
        }
        self.messages: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        self.seen_headers: list[dict[str, str]] = []
        self.seen_bodies: list[bytes] = []
        self.seen_requests: list[tuple[str, str]] = []  # (method, raw path after /api/v10)
        self.inflight: collections.Counter[str] = collections.Counter()
        self.max_inflight = 0  # most requests on one channel at the same time
        self.delay_s = 0.0  # per message answer, so overlapping requests would show
        self.script: dict[str, collections.deque[Canned]] = collections.defaultdict(
            collections.deque
        )
        self._global: collections.deque[float] = collections.deque()
        self.arrivals: list[float] = []  # global-limited arrivals, for diagnosis
        self._buckets: dict[str, list[float]] = {}  # channel -> [remaining, reset_at]
        self._ids = itertools.count(1_000_000_000_000_000_000)
        self._runner: web.AppRunner | None = None
        self.api_base = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/v10/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.api_base = f"http://127.0.0.1:{port}/api/v10"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=msgspec.json.encode(obj),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        path = "/" + request.match_info["tail"]
        c = self.counters
        c["requests"] += 1
        self.seen_headers.append(dict(request.headers))
        body = await request.read()
        self.seen_bodies.append(body)
        self.seen_requests.append((request.method, request.raw_path.removeprefix("/api/v10")))
        if request.headers.get("Authorization") != f"Bot {self.token}":
            c["invalid_requests"] += 1
            return self._json(401, {"message": "401: Unauthorized", "code": 0})
        exempt = path.startswith("/interactions/")
        if not exempt:
            while self._global and self._global[0] <= now - 1.0:
                self._global.popleft()
            if len(self._global) >= self.global_limit:
                c["global_violations"] += 1
                c["rate_limited"] += 1
                c["invalid_requests"] += 1
                self._global.append(now)
                self.arrivals.append(now)
                return self._json(
                    429,
                    {"message": "You are being rate limited.", "retry_after": 0.2, "global": True},
                    {
                        "X-RateLimit-Global": "true",
                        "X-RateLimit-Scope": "global",
                        "Retry-After": "1",
                    },
                )
            self._global.append(now)
            self.arrivals.append(now)
        if self.upstream is not None and path in PROXIED:
            async with aiohttp.ClientSession() as http:
                url = self.upstream + path
                async with http.get(url, headers={"Authorization": f"Bot {self.token}"}) as up:
                    return web.Response(
                        status=up.status, body=await up.read(), content_type="application/json"
                    )
        canned = self.script.get(f"{request.method} {path}")
        if canned:
            answer = canned.popleft()
            if answer.status in (401, 403) or (
                answer.status == 429 and answer.headers.get("X-RateLimit-Scope") != "shared"
            ):
                c["invalid_requests"] += 1
            if answer.status == 429:
                c["rate_limited"] += 1
            return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        parts = path.strip("/").split("/")
        if (
            request.method == "POST"
            and len(parts) == 3
            and parts[0] == "channels"
            and parts[2] == "messages"
        ):
            c["by_route"]["POST /channels/{channel_id}/messages"] += 1
            channel = parts[1]
            self.inflight[channel] += 1
            self.max_inflight = max(self.max_inflight, self.inflight[channel])
            try:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                return self._message(channel, body, now)
            finally:
                self.inflight[channel] -= 1
        if request.method == "GET" and parts == ["users", "@me"]:
            c["by_route"]["GET /users/@me"] += 1
            return self._json(200, {"id": "1", "username": "bot"})
        if len(parts) == 4 and parts[0] == "interactions" and parts[3] == "callback":
            c["by_route"]["POST /interactions/{interaction_id}/{interaction_token}/callback"] += 1
            return web.Response(status=204)
        return self._json(404, {"message": "404: Not Found", "code": 0})

    def _message(self, channel: str, body: bytes, now: float) -> web.Response:
        c = self.counters
        state = self._buckets.get(channel)
        if state is None or state[1] <= now:
            state = self._buckets[channel] = [float(self.bucket_size), now + self.bucket_window_s]
        reset_after = max(0.0, state[1] - now)
        headers = {
            "X-RateLimit-Limit": str(self.bucket_size),
            "X-RateLimit-Bucket": MESSAGE_BUCKET,
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        }
        if state[0] <= 0:
            c["limit_violations"] += 1
            c["rate_limited"] += 1
            c["invalid_requests"] += 1
            headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Scope": "user"})
            return self._json(
                429,
                {
                    "message": "You are being rate limited.",
                    "retry_after": reset_after,
                    "global": False,
                },
                headers,
            )
        state[0] -= 1
        headers["X-RateLimit-Remaining"] = str(int(state[0]))
        payload = msgspec.json.decode(body) if body else {}
        message = {
            "id": str(next(self._ids)),
            "channel_id": channel,
            "content": payload.get("content", ""),
            "author": {"id": "1", "bot": True},
            "message_reference": payload.get("message_reference"),
        }
        self.messages[channel].append(message)
        return self._json(200, message, headers)

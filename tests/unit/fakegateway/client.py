"""A tiny gateway test client over plain aiohttp: inflates zlib-stream / zstd-stream (and
payload-compressed frames), decodes JSON, and exposes the close code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from typing import Any

import aiohttp
import zstandard

from fakegateway import FakeGateway, make_token

TOKEN = make_token()
# Every client a test opened, so the fixture can close them (a client dropped mid-test
# would otherwise be garbage-collected with its connection open).
OPEN_CLIENTS: list[GatewayClient] = []
ALL_NON_PRIVILEGED = 53575421


class Closed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class GatewayClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self._zlib = zlib.decompressobj() if compress == "zlib-stream" else None
        self._zstd = (
            zstandard.ZstdDecompressor().decompressobj() if compress == "zstd-stream" else None
        )
        self._buffer = bytearray()
        self.frames = 0
        self.seq: int | None = None
        self.session_id: str | None = None
        self.resume_url: str | None = None
        self.skip_acks = False
        self._beat: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        session: aiohttp.ClientSession,
        url: str,
        *,
        compress: str | None = None,
        version: str | None = "10",
        extra: str = "",
    ) -> GatewayClient:
        query = []
        if version is not None:
            query.append(f"v={version}")
        query.append("encoding=json")
        if compress:
            query.append(f"compress={compress}")
        full = f"{url.rstrip('/')}/?{'&'.join(query)}{extra}"
        ws = await session.ws_connect(full, max_msg_size=0, autoclose=False, autoping=True)
        client = cls(ws, compress)
        OPEN_CLIENTS.append(client)
        return client

    async def recv(self, wait_s: float = 5.0) -> dict[str, Any]:
        """The next whole gateway message; raises Closed when the server closes."""
        while True:
            msg = await self.ws.receive(wait_s)
            self.frames += 1
            if msg.type == aiohttp.WSMsgType.TEXT:
                data: Any = json.loads(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                raw = self._inflate(msg.data)
                if raw is None:
                    continue
                data = json.loads(raw)
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                await self.ws.close()
                raise Closed(msg.data)
            else:
                raise Closed(self.ws.close_code)
            if self.skip_acks and data.get("op") == 11:
                continue
            if data.get("s") is not None:
                self.seq = data["s"]
            return dict(data)

    def _inflate(self, chunk: bytes) -> bytes | None:
        if self._zlib is not None:
            self._buffer += chunk
            if not chunk.endswith(b"\x00\x00\xff\xff"):
                return None
            out = self._zlib.decompress(bytes(self._buffer))
            self._buffer.clear()
            return out
        if self._zstd is not None:
            return bytes(self._zstd.decompress(chunk))
        return zlib.decompress(chunk)

    async def recv_until(self, pred: Any, wait_s: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(wait_s):
            while True:
                msg = await self.recv(wait_s)
                if pred(msg):
                    return msg

    async def expect_close(self, wait_s: float = 5.0) -> int | None:
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    await self.recv(wait_s)
        except Closed as exc:
            return exc.code
        raise AssertionError("unreachable")

    async def send(self, op: int, d: Any) -> None:
        await self.ws.send_str(json.dumps({"op": op, "d": d}))

    async def heartbeat(self) -> None:
        await self.send(1, self.seq)

    async def identify(
        self,
        shard: list[int] | None = None,
        *,
        token: str = TOKEN,
        intents: int | None = ALL_NON_PRIVILEGED,
        compress: bool = False,
    ) -> None:
        d: dict[str, Any] = {
            "token": token,
            "properties": {"os": "linux", "browser": "test", "device": "test"},
            "compress": compress,
        }
        if intents is not None:
            d["intents"] = intents
        if shard is not None:
            d["shard"] = shard
        await self.send(2, d)

    async def ready(self, shard: list[int] | None = None, **kw: Any) -> dict[str, Any]:
        """Hello, Identify, READY; returns READY's d."""
        hello = await self.recv()
        assert hello["op"] == 10, hello
        await self.identify(shard, **kw)
        msg = await self.recv_until(lambda m: m["op"] == 0 and m["t"] == "READY")
        self.session_id = msg["d"]["session_id"]
        self.resume_url = msg["d"]["resume_gateway_url"]
        return dict(msg["d"])

    async def resume(self, session_id: str, seq: int, token: str = TOKEN) -> None:
        await self.send(6, {"token": token, "session_id": session_id, "seq": seq})

    def start_heartbeats(self, interval: float) -> None:
        """Heartbeat in the background (for tests that outlive the server's timeout);
        ACKs are then dropped by ``recv``."""
        self.skip_acks = True

        async def beat() -> None:
            while not self.ws.closed:
                await self.heartbeat()
                await asyncio.sleep(interval)

        self._beat = asyncio.ensure_future(beat())

    async def close(self, code: int = 4000) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, ConnectionError):
                await self._beat
        await self.ws.close(code=code)


async def ready_client(
    http: aiohttp.ClientSession,
    fg: FakeGateway,
    shard: list[int] | None = None,
    compress: str | None = None,
    **kw: Any,
) -> GatewayClient:
    client = await GatewayClient.connect(http, fg.gateway_url, compress=compress)
    await client.ready(shard, **kw)
    return client

"""Transport compression modes, each with its own per-connection context."""

from __future__ import annotations

import zlib

import aiohttp
import pytest

from fakegateway import FakeGateway
from tests.unit.fakegateway.client import GatewayClient, ready_client
from tests.unit.fakegateway.conftest import Factory


async def _startup(client: GatewayClient, fg: FakeGateway) -> list[dict]:
    target = fg.sessions()[-1]["last_seq"]
    out = []
    while client.seq != target:
        out.append(await client.recv())
    return out


@pytest.mark.parametrize("mode", ["zlib-stream", "zstd-stream"])
async def test_stream_compression_sends_binary_frames_that_inflate(fg: FakeGateway, http, mode):
    client = await GatewayClient.connect(http, fg.gateway_url, compress=mode)
    raw = await client.ws.receive()
    assert raw.type == aiohttp.WSMsgType.BINARY
    if mode == "zlib-stream":
        assert raw.data[:2] == b"\x78\x9c" and raw.data.endswith(b"\x00\x00\xff\xff")
    else:
        assert raw.data[:4] == b"\x28\xb5\x2f\xfd"
    hello = client._inflate(raw.data)
    assert hello is not None and b'"op":10' in hello
    await client.identify([0, 2])
    assert (await client.recv())["t"] == "READY"
    assert all(m["t"] == "GUILD_CREATE" for m in await _startup(client, fg))


async def test_uncompressed_connection_sends_text_frames(fg: FakeGateway, http):
    client = await GatewayClient.connect(http, fg.gateway_url)
    raw = await client.ws.receive()
    assert raw.type == aiohttp.WSMsgType.TEXT
    assert raw.data.startswith('{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":300')


async def test_zlib_message_split_across_several_frames_reassembles(make_gateway: Factory, http):
    fg = await make_gateway(zlib_chunk_bytes=64)
    client = await ready_client(http, fg, compress="zlib-stream")
    messages = await _startup(client, fg)
    assert messages and all(m["t"] == "GUILD_CREATE" for m in messages)
    # Hello + READY + GUILD_CREATEs arrived in more frames than messages.
    assert client.frames > len(messages) + 2


async def test_each_connection_has_its_own_compression_context(make_gateway: Factory, http):
    fg = await make_gateway(shards=2, max_concurrency=2)
    a = await ready_client(http, fg, [0, 2], compress="zlib-stream")
    b = await ready_client(http, fg, [1, 2], compress="zlib-stream")
    await _startup(b, fg)
    assert a.session_id != b.session_id


async def test_identify_compress_true_zlib_compresses_large_payloads(make_gateway: Factory, http):
    fg = await make_gateway(payload_compress_threshold=100)
    client = await GatewayClient.connect(http, fg.gateway_url)
    await client.recv()
    await client.identify(compress=True)
    raw = await client.ws.receive()
    assert raw.type == aiohttp.WSMsgType.BINARY
    assert b'"t":"READY"' in zlib.decompress(raw.data)


async def test_unknown_compress_value_closes_4002(fg: FakeGateway, http):
    ws = await http.ws_connect(f"{fg.gateway_url}/?v=10&encoding=json&compress=brotli")
    msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4002
    await ws.close()


@pytest.mark.parametrize("chunk", [4, 5, 7, 64])
async def test_split_messages_end_each_in_a_frame_that_holds_the_whole_suffix(
    make_gateway: Factory, http, chunk
):
    # The test client, like discord.py, inflates only when a frame ends with the suffix.
    fg = await make_gateway(zlib_chunk_bytes=chunk)
    client = await ready_client(http, fg, compress="zlib-stream")
    messages = await _startup(client, fg)
    assert messages and all(m["t"] == "GUILD_CREATE" for m in messages)

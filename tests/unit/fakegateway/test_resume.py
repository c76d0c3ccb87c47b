"""Sessions outlive their sockets: RESUME replays what was missed, then RESUMED."""

from __future__ import annotations

from fakegateway import FakeGateway
from tests.unit.fakegateway.client import GatewayClient, ready_client
from tests.unit.fakegateway.conftest import Factory


async def _drain_startup(client: GatewayClient, fg: FakeGateway) -> int:
    """Read READY's GUILD_CREATE burst; returns the last seq."""
    target = fg.sessions()[-1]["last_seq"]
    while client.seq != target:
        await client.recv()
    return target


async def _resume(fg: FakeGateway, http, session_id: str, seq: int, url: str | None = None):
    client = await GatewayClient.connect(http, url or fg.resume_gateway_url)
    assert (await client.recv())["op"] == 10
    await client.resume(session_id, seq)
    return client


async def test_resume_replays_every_event_after_seq_then_resumed(fg: FakeGateway, http):
    first = await ready_client(http, fg, [0, 2])
    last = await _drain_startup(first, fg)
    assert first.session_id is not None
    await first.close(4000)
    await fg.wait_for(lambda g: g.sessions()[0]["state"] == "disconnected", 5)
    second = await _resume(fg, http, first.session_id, 1)
    replayed = [await second.recv() for _ in range(last - 1)]
    assert [m["s"] for m in replayed] == list(range(2, last + 1))
    resumed = await second.recv()
    assert resumed["t"] == "RESUMED" and resumed["s"] == last + 1
    assert isinstance(resumed["d"], dict)
    (s,) = fg.sessions()
    assert s["state"] == "active" and s["resumes"] == 1 and s["replayed"] == last - 1


async def test_resume_with_current_seq_replays_nothing(fg: FakeGateway, http):
    first = await ready_client(http, fg, [0, 2])
    last = await _drain_startup(first, fg)
    assert first.session_id is not None
    await first.close(4000)
    second = await _resume(fg, http, first.session_id, last)
    msg = await second.recv()
    assert msg["t"] == "RESUMED" and msg["s"] == last + 1


async def test_events_generated_while_stalled_are_replayed(make_gateway: Factory, http):
    fg = await make_gateway(shards=1, event_rate=200)
    first = await ready_client(http, fg)
    first.start_heartbeats(0.1)
    await _drain_startup(first, fg)
    seen = first.seq or 0
    await fg.inject("stall", 0)
    await fg.wait_for(lambda g: g.sessions()[0]["last_seq"] > seen + 20, 5)
    await first.close(4000)
    assert first.session_id is not None
    second = await _resume(fg, http, first.session_id, seen)
    msg = await second.recv_until(lambda m: m["t"] == "RESUMED")
    assert second.seq == msg["s"]
    assert fg.sessions()[0]["replayed"] >= 20


async def test_resume_on_main_url_is_counted(fg: FakeGateway, http):
    first = await ready_client(http, fg, [0, 2])
    assert first.session_id is not None and first.seq is not None
    await first.close(4000)
    second = await _resume(fg, http, first.session_id, first.seq, url=fg.gateway_url)
    await second.recv_until(lambda m: m["t"] == "RESUMED")
    assert fg.stats()["resumes_wrong_url"] == 1
    assert fg.sessions()[0]["resumes_wrong_url"] == 1


async def test_resume_on_main_url_can_be_refused(make_gateway: Factory, http):
    fg = await make_gateway(reject_resume_on_main_url=True)
    first = await ready_client(http, fg)
    assert first.session_id is not None and first.seq is not None
    await first.close(4000)
    second = await _resume(fg, http, first.session_id, first.seq, url=fg.gateway_url)
    assert (await second.recv())["op"] == 9


async def test_resume_of_unknown_session_gets_op9_false(fg: FakeGateway, http):
    client = await _resume(fg, http, "0" * 32, 1)
    assert await client.recv() == {"t": None, "s": None, "op": 9, "d": False}
    assert fg.stats()["resume_failures"] == 1


async def test_resume_with_seq_evicted_from_replay_buffer_gets_op9_false(make_gateway, http):
    fg = await make_gateway(replay_buffer=3, guilds=10)
    first = await ready_client(http, fg)
    await _drain_startup(first, fg)
    assert first.session_id is not None
    await first.close(4000)
    second = await _resume(fg, http, first.session_id, 1)
    assert (await second.recv())["op"] == 9
    assert fg.sessions()[0]["ended_reason"] == "replay_gap"


async def test_client_close_1000_ends_the_session(fg: FakeGateway, http):
    first = await ready_client(http, fg, [0, 2])
    await first.close(1000)
    await fg.wait_for(lambda g: g.sessions()[0]["state"] == "ended", 5)
    s = fg.sessions()[0]
    assert s["ended_reason"] == "client_close_1000" and s["invalidated_by_server"] is False
    assert first.session_id is not None and first.seq is not None
    second = await _resume(fg, http, first.session_id, first.seq)
    assert (await second.recv())["op"] == 9


async def test_client_close_4000_keeps_the_session_resumable(fg: FakeGateway, http):
    first = await ready_client(http, fg, [0, 2])
    await first.close(4000)
    await fg.wait_for(lambda g: g.sessions()[0]["state"] == "disconnected", 5)
    assert fg.stats()["client_closes_by_code"] == {"4000": 1}


async def test_resume_while_old_socket_is_open_takes_the_session_over(fg: FakeGateway, http):
    first = await ready_client(http, fg, [0, 2])
    assert first.session_id is not None and first.seq is not None
    second = await _resume(fg, http, first.session_id, first.seq)
    await second.recv_until(lambda m: m["t"] == "RESUMED")
    assert await first.expect_close() is not None or first.ws.closed
    await fg.wait_for(lambda g: g.stats()["connections_open"] == 1, 5)
    assert fg.sessions()[0]["state"] == "active"


async def test_heartbeat_timeout_closes_but_keeps_session_resumable(make_gateway: Factory, http):
    fg = await make_gateway(heartbeat_timeout_code=4000)
    first = await ready_client(http, fg)
    assert await first.expect_close() == 4000
    await fg.wait_for(lambda g: g.sessions()[0]["state"] == "disconnected", 5)
    assert fg.stats()["heartbeat_timeouts"] == 1
    assert first.session_id is not None and first.seq is not None
    second = await _resume(fg, http, first.session_id, first.seq)
    assert (await second.recv_until(lambda m: m["op"] == 0))["t"] == "RESUMED"

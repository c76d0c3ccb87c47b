"""The receive path driven without a socket: ``Shard.feed``."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from tests.doubles import RecordingReporter
from tests.unit.workers.gateway_harness import RecordingPermits
from workers import ipc
from workers import shard as shard_module
from workers.clock import REAL_CLOCK, Clock, FakeClock
from workers.decisions import Next, Reason
from workers.events import Event
from workers.handlers import TURN_EVERY, Delivery, Handler
from workers.permits import IdentifyPermit, InProcessPermits
from workers.reporter import ShardCounters, snapshot
from workers.shard import TRANSITIONS, IllegalTransition, Shard, ShardState


async def nothing(event: Event) -> None:
    return None


def make_shard(
    compress: str = "none",
    session: ipc.SessionInfo | None = None,
    *,
    clock: Clock = REAL_CLOCK,
    backlog: int = 1000,
    handler: Callable[[Event], Awaitable[None]] = nothing,
    permits: IdentifyPermit | None = None,
    **config_overrides: Any,
) -> tuple[Shard, RecordingReporter]:
    settings: dict[str, Any] = {"max_message_bytes": 10_000, "num_shards": 1, **config_overrides}
    config = ipc.WorkerConfig(
        worker_id=0,
        token="token",
        gateway_url="ws://127.0.0.1:1",
        shards=[ipc.ShardAssignment(0, session)],
        intents=1,
        compress=compress,
        **settings,
    )
    reporter = RecordingReporter()
    delivery = Delivery(0, Handler(handler), ShardCounters(), maxsize=backlog)
    shard = Shard(
        0,
        config,
        permits=permits or InProcessPermits(),
        reporter=reporter,
        delivery=delivery,
        session=session,
        clock=clock,
    )
    return shard, reporter


def dispatch(seq: int, name: str, d: object) -> bytes:
    return msgspec.json.encode({"op": 0, "s": seq, "t": name, "d": d})


READY = {
    "v": 10,
    "user": {"id": "1", "username": "bot", "bot": True},
    "guilds": [{"id": "10", "unavailable": True}, {"id": "11", "unavailable": True}],
    "session_id": "abc",
    "resume_gateway_url": "ws://127.0.0.1:2",
    "shard": [0, 1],
    "_trace": ["x"],
}


async def test_ready_starts_the_session_and_is_delivered_with_seq_1() -> None:
    shard, reporter = make_shard()
    shard.feed(b'{"op":10,"d":{"heartbeat_interval":41250}}')
    shard.feed(dispatch(1, "READY", READY))
    assert shard.session_id == "abc"
    assert shard.resume_url == "ws://127.0.0.1:2"
    assert shard.state is ShardState.CONNECTED
    assert shard.guilds == 2
    assert reporter.sessions[-1][1] == "identify"
    assert shard.delivery.backlog == 1
    assert shard.counters.events == {"READY": 1}


async def test_dispatch_seq_is_tracked_and_a_replayed_seq_is_not_delivered_twice() -> None:
    shard, _ = make_shard()
    shard.feed(dispatch(1, "READY", READY))
    for s in (2, 3, 3, 2, 4):
        shard.feed(dispatch(s, "MESSAGE_CREATE", {}))
    assert shard.seq == 4
    assert shard.duplicates == 2
    assert shard.delivery.backlog == 4


async def test_text_frames_are_plain_json() -> None:
    shard, _ = make_shard(compress="zlib-stream")
    shard.feed_text(dispatch(1, "READY", READY))
    assert shard.session_id == "abc"


async def test_zlib_frames_split_over_messages_are_reassembled() -> None:
    shard, _ = make_shard(compress="zlib-stream")
    c = zlib.compressobj()
    frame = c.compress(dispatch(1, "READY", READY)) + c.flush(zlib.Z_SYNC_FLUSH)
    shard.feed(frame[:10])
    assert shard.session_id is None
    shard.feed(frame[10:])
    assert shard.session_id == "abc"
    assert shard.counters.bytes_compressed == len(frame)
    assert shard.counters.bytes_inflated == len(dispatch(1, "READY", READY))


async def test_malformed_json_is_counted_and_ends_the_connection_keeping_the_session() -> None:
    shard, _ = make_shard()
    shard.feed(dispatch(1, "READY", READY))
    shard.feed(b'{"op":0,"s":2,"t":"X","d":{')
    assert shard.counters.bad_payloads == 1
    assert shard.action is not None
    assert shard.action.reason is Reason.BAD_PAYLOAD
    assert shard.action.next is Next.RESUME


async def test_corrupt_compression_is_counted_as_a_bad_payload() -> None:
    shard, _ = make_shard(compress="zlib-stream")
    shard.feed(b"\x01\x02garbage\x00\x00\xff\xff")
    assert shard.counters.bad_payloads == 1
    assert shard.action is not None and shard.action.reason is Reason.BAD_PAYLOAD


async def test_oversized_message_is_a_bad_payload() -> None:
    shard, _ = make_shard()
    shard.feed(b'{"op":0,"s":1,"t":"X","d":"' + b"x" * 20_000 + b'"}')
    assert shard.counters.bad_payloads == 1


async def test_op7_asks_for_a_resume() -> None:
    shard, _ = make_shard()
    shard.feed(dispatch(1, "READY", READY))
    shard.feed(b'{"op":7,"d":null}')
    assert shard.action is not None
    assert (shard.action.next, shard.action.reason) == (Next.RESUME, Reason.OP7)


async def test_op9_false_drops_the_session_and_identifies() -> None:
    shard, _ = make_shard()
    shard.feed(dispatch(1, "READY", READY))
    shard.feed(b'{"op":9,"d":false}')
    assert shard.session_id is None
    assert shard.action is not None and shard.action.next is Next.IDENTIFY


async def test_op9_true_keeps_the_session() -> None:
    shard, _ = make_shard()
    shard.feed(dispatch(1, "READY", READY))
    shard.feed(b'{"op":9,"d":true}')
    assert shard.session_id == "abc"
    assert shard.action is not None and shard.action.next is Next.RESUME


async def test_ack_records_latency() -> None:
    shard, _ = make_shard()
    shard.monitor.on_sent()
    shard.feed(b'{"t":null,"s":null,"op":11,"d":null}')
    assert shard.latency_s is not None
    assert len(shard.counters.latencies_s) == 1


async def test_checkpoint_session_uses_the_handlers_progress() -> None:
    given = ipc.SessionInfo("old", 40, "ws://127.0.0.1:3")
    shard, _ = make_shard(session=given)
    shard.feed(dispatch(41, "MESSAGE_CREATE", {}))
    assert shard.session_info() == ipc.SessionInfo("old", 41, "ws://127.0.0.1:3")
    # nothing finished yet: another process must resume from 40 and see 41 again
    assert shard.checkpoint_session() == given


async def test_malformed_ready_is_a_bad_payload_and_does_not_move_the_seq() -> None:
    shard, _ = make_shard()
    shard.feed(dispatch(1, "READY", {"v": 10}))
    assert shard.counters.bad_payloads == 1
    assert shard.seq == 0
    assert shard.session_id is None
    assert shard.delivery.backlog == 0


async def test_resumed_connects_a_resuming_shard() -> None:
    given = ipc.SessionInfo("old", 40, "ws://127.0.0.1:3")
    shard, reporter = make_shard(session=given)
    shard.set_state(ShardState.CONNECTING)
    shard.set_state(ShardState.RESUMING)
    shard.feed(dispatch(41, "MESSAGE_CREATE", {}))
    shard.feed(dispatch(42, "RESUMED", {}))
    assert shard.state is ShardState.CONNECTED
    assert reporter.sessions[-1][1] == "resume"
    assert reporter.sessions[-1][2] == ipc.SessionInfo("old", 42, "ws://127.0.0.1:3")


def replayed_failing(frame: bytes, times: int, text: bool = False) -> Shard:
    """A resumed shard whose every connection fails on the same replayed ``frame``."""
    shard, _ = make_shard(session=ipc.SessionInfo("old", 40, "ws://127.0.0.1:3"))
    for _ in range(times):
        shard.new_connection()
        (shard.feed_text if text else shard.feed)(frame)
        assert shard.action is not None and shard.action.next is Next.RESUME
    return shard


async def test_bad_json_replayed_at_the_same_seq_three_times_skips_that_event() -> None:
    shard = replayed_failing(b'{"op":0,"s":41,"t":"MESSAGE_CREATE","d":{', 3)
    assert shard.counters.bad_payloads == 3
    assert shard.session.skip_one


async def test_two_bad_payloads_at_the_same_seq_do_not_skip_an_event() -> None:
    shard = replayed_failing(b"\xff\xfe not json", 2)
    assert not shard.session.skip_one


async def test_oversized_text_frame_is_a_bad_payload_counted_toward_the_skip() -> None:
    shard = replayed_failing(dispatch(41, "MESSAGE_CREATE", {"x": "a" * 20_000}), 3, text=True)
    assert shard.counters.bad_payloads == 3
    assert shard.session.skip_one


async def test_resumed_carrying_an_already_received_seq_still_connects() -> None:
    given = ipc.SessionInfo("old", 40, "ws://127.0.0.1:3")
    shard, _ = make_shard(session=given)
    shard.set_state(ShardState.CONNECTING)
    shard.set_state(ShardState.RESUMING)
    shard.feed(dispatch(40, "RESUMED", {}))
    assert shard.state is ShardState.CONNECTED
    assert shard.seq == 40
    assert shard.duplicates == 0


async def test_resumed_with_an_unexpected_body_still_connects() -> None:
    given = ipc.SessionInfo("old", 40, "ws://127.0.0.1:3")
    shard, _ = make_shard(session=given)
    shard.set_state(ShardState.CONNECTING)
    shard.set_state(ShardState.RESUMING)
    shard.feed(dispatch(41, "RESUMED", None))
    assert shard.state is ShardState.CONNECTED
    assert shard.counters.bad_payloads == 0


async def test_ready_without_user_or_application_fields_starts_the_session() -> None:
    shard, _ = make_shard()
    shard.feed(
        dispatch(1, "READY", {"session_id": "s", "resume_gateway_url": "ws://x", "guilds": []})
    )
    assert shard.state is ShardState.CONNECTED
    assert shard.session_id == "s"


def test_identify_payload_above_4096_bytes_is_rejected_at_shard_creation() -> None:
    with pytest.raises(ValueError, match="4096"):
        make_shard(identify_properties={"os": "x" * 5000})


async def test_our_identify_rejected_with_4002_twice_in_a_row_stops_the_shard() -> None:
    shard, _ = make_shard()
    shard.set_state(ShardState.CONNECTING)
    shard.set_state(ShardState.WAITING_PERMIT)
    shard.set_state(ShardState.IDENTIFYING)
    shard.server_closed(4002, "decode error")
    assert shard.action is not None and shard.action.next is not Next.STOP
    shard.new_connection()
    shard.set_state(ShardState.IDENTIFYING)
    shard.server_closed(4002, "decode error")
    assert shard.action is not None and shard.action.next is Next.STOP
    assert shard.action.close_code == 4002


async def test_4001_while_connected_does_not_count_as_a_rejected_identify() -> None:
    shard, _ = make_shard()
    shard.feed(dispatch(1, "READY", READY))
    for _ in range(2):
        shard.new_connection()
        shard.server_closed(4001, "unknown opcode")
        assert shard.action is not None and shard.action.next is not Next.STOP


async def test_duplicates_identifies_resumes_and_skips_are_reported_in_shard_stats() -> None:
    shard, _ = make_shard()
    shard.feed(dispatch(1, "READY", READY))
    shard.feed(dispatch(1, "MESSAGE_CREATE", {}))
    (stats,) = snapshot([shard])
    assert stats.duplicates == 1
    (stats,) = snapshot([shard])
    assert stats.duplicates == 0  # a delta, like the other counters


async def test_hello_with_a_zero_interval_is_a_bad_payload() -> None:
    shard, _ = make_shard()
    shard.feed(b'{"op":10,"d":{"heartbeat_interval":0}}')
    assert shard.counters.bad_payloads == 1
    assert shard.heartbeater is None


class FakeSocket:
    closed = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_frame(self, data: bytes, kind: object) -> None:
        self.sent.append(data)

    async def close(self, code: int) -> None:
        self.closed = True


async def test_server_requested_beat_is_owned_by_the_connection_and_keeps_proof_of_life() -> None:
    shard, _ = make_shard()
    shard.feed(b'{"op":10,"d":{"heartbeat_interval":41250}}')
    socket = FakeSocket()
    shard.runner.ws = socket  # type: ignore[assignment]
    shard.monitor.received_since_beat = False
    shard.feed(b'{"op":1,"d":null}')
    (task,) = shard.runner._tasks  # cancelled and awaited when the connection ends
    await task
    assert socket.sent == [b'{"op":1,"d":null}']
    assert shard.monitor.received_since_beat
    assert shard.monitor.awaiting_ack


async def test_ready_deadline_moves_forward_by_the_time_reading_was_paused() -> None:
    clock = FakeClock()
    shard, _ = make_shard(clock=clock, backlog=1)
    delivery = shard.delivery
    shard.feed(dispatch(1, "MESSAGE_CREATE", {}))  # fills the backlog
    shard.deadline = clock.monotonic() + 15
    waiting = asyncio.ensure_future(shard.runner.wait_for_room())
    await asyncio.sleep(0)  # one loop turn: the reader is now paused
    assert shard.monitor.paused
    await clock.advance(20)
    runner = asyncio.ensure_future(delivery.run())
    async with asyncio.timeout(5):
        await waiting
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert shard.deadline == 1000 + 15 + 20


async def test_the_reader_yields_to_the_handler_after_a_turn_of_events_without_pausing() -> None:
    delivered: list[int | None] = []

    async def record(event: Event) -> None:
        delivered.append(event.seq)

    shard, _ = make_shard(handler=record, backlog=10 * TURN_EVERY)
    delivery = shard.delivery
    runner = asyncio.ensure_future(delivery.run())
    shard.feed(dispatch(1, "READY", READY))
    for seq in range(2, TURN_EVERY + 1):
        shard.feed(dispatch(seq, "MESSAGE_CREATE", {}))
    assert delivery.hold and delivered == []
    await shard.give_handler_a_turn()
    assert delivered == list(range(1, TURN_EVERY + 1))
    assert not delivery.hold and not shard.monitor.paused
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def test_last_event_time_is_stamped_per_report_only_when_events_arrived() -> None:
    shard, _ = make_shard()
    (quiet,) = snapshot([shard])
    shard.feed(dispatch(1, "READY", READY))
    (busy,) = snapshot([shard])
    assert quiet.last_event_at is None
    assert busy.last_event_at is not None


async def identified_shard() -> tuple[Shard, RecordingPermits, FakeSocket]:
    permits = RecordingPermits()
    shard, _ = make_shard(permits=permits)
    shard.feed(b'{"op":10,"d":{"heartbeat_interval":41250}}')
    socket = FakeSocket()
    shard.runner.ws = socket  # type: ignore[assignment]
    shard.set_state(ShardState.CONNECTING)
    await shard.runner._identify()
    return shard, permits, socket


async def test_writing_the_identify_does_not_yet_start_the_buckets_window() -> None:
    _, permits, socket = await identified_shard()
    assert any(b'"op":2' in frame for frame in socket.sent)
    assert permits.log == ["granted"]


async def test_ready_starts_the_buckets_identify_window() -> None:
    shard, permits, _ = await identified_shard()
    shard.feed(dispatch(1, "READY", READY))
    assert permits.log == ["granted", "sent"]


async def test_op9_answering_the_identify_starts_the_buckets_window() -> None:
    shard, permits, _ = await identified_shard()
    shard.feed(b'{"op":9,"d":false}')
    assert permits.log == ["granted", "sent"]
    assert shard.runner._closer is not None
    await shard.runner._closer


async def test_a_later_op9_does_not_report_the_identify_twice() -> None:
    shard, permits, _ = await identified_shard()
    shard.feed(dispatch(1, "READY", READY))
    shard.feed(b'{"op":9,"d":true}')
    assert permits.log == ["granted", "sent"]
    assert shard.runner._closer is not None
    await shard.runner._closer


async def test_an_identify_with_no_socket_releases_its_grant() -> None:
    permits = RecordingPermits()
    shard, _ = make_shard(permits=permits)
    shard.set_state(ShardState.CONNECTING)
    await shard.runner._identify()
    assert permits.log == ["granted", "released"]


async def test_an_illegal_state_change_fails_under_test_and_is_logged_and_counted_else(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shard, reporter = make_shard()
    with pytest.raises(IllegalTransition):
        shard.set_state(ShardState.RESUMING)  # RESUME is only sent on a new connection
    monkeypatch.setattr(shard_module, "STRICT_TRANSITIONS", False)
    shard.set_state(ShardState.RESUMING)
    assert shard.illegal_transitions == 2
    assert "illegal shard state transition" in caplog.text
    assert reporter.states[-1] == (0, ShardState.RESUMING)


def test_every_state_can_stop_and_a_stopped_shard_goes_nowhere() -> None:
    assert set(TRANSITIONS) == set(ShardState)
    for state, following in TRANSITIONS.items():
        assert (ShardState.STOPPED in following) is (state is not ShardState.STOPPED)


SHARDING_WARNING = "does not seem to honour sharding"


async def test_a_ready_for_another_shard_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    shard, _ = make_shard(num_shards=2)
    shard.feed(dispatch(1, "READY", {**READY, "shard": [0, 2]}))
    assert SHARDING_WARNING not in caplog.text
    for seq in (2, 3):
        shard.feed(dispatch(seq, "READY", {**READY, "shard": [1, 2]}))
    assert caplog.text.count(SHARDING_WARNING) == 1


async def test_a_guild_of_another_shard_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    shard, _ = make_shard(num_shards=2)
    ours, theirs = 2 << 22, 3 << 22  # Discord's rule: (id >> 22) % num_shards
    shard.feed(dispatch(1, "READY", {**READY, "shard": [0, 2]}))
    shard.feed(dispatch(2, "GUILD_CREATE", {"id": str(ours)}))
    assert SHARDING_WARNING not in caplog.text
    shard.feed(dispatch(3, "GUILD_CREATE", {"id": str(theirs)}))
    shard.feed(dispatch(4, "GUILD_CREATE", {"id": str(theirs + 1)}))
    assert caplog.text.count(SHARDING_WARNING) == 1
    assert shard.delivery.backlog == 4  # a warning, never a reason to drop the event

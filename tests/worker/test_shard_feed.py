"""The receive path driven without a socket: ``Shard.feed``."""

from __future__ import annotations

import zlib

import msgspec

from workers import ipc
from workers.decisions import Next, Reason
from workers.handlers import Delivery, Handler
from workers.permits import InProcessPermits
from workers.reporter import RecordingReporter, ShardCounters
from workers.shard import Shard, ShardState


async def nothing(event: object) -> None:
    return None


def make_shard(
    compress: str = "none", session: ipc.SessionInfo | None = None
) -> tuple[Shard, RecordingReporter]:
    config = ipc.WorkerConfig(
        worker_id=0,
        token="token",
        gateway_url="ws://127.0.0.1:1",
        num_shards=1,
        shards=[ipc.ShardAssignment(0, session)],
        intents=1,
        compress=compress,
        max_message_bytes=10_000,
    )
    reporter = RecordingReporter()
    delivery = Delivery(0, Handler(nothing), ShardCounters())
    shard = Shard(
        0, config, permits=InProcessPermits(), reporter=reporter, delivery=delivery, session=session
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
    shard.feed(dispatch(1, "READY", READY).decode())
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
    assert shard._action is not None
    assert shard._action.reason is Reason.BAD_PAYLOAD
    assert shard._action.next is Next.RESUME


async def test_corrupt_compression_is_counted_as_a_bad_payload() -> None:
    shard, _ = make_shard(compress="zlib-stream")
    shard.feed(b"\x01\x02garbage\x00\x00\xff\xff")
    assert shard.counters.bad_payloads == 1
    assert shard._action is not None and shard._action.reason is Reason.BAD_PAYLOAD


async def test_oversized_message_is_a_bad_payload() -> None:
    shard, _ = make_shard()
    shard.feed(b'{"op":0,"s":1,"t":"X","d":"' + b"x" * 20_000 + b'"}')
    assert shard.counters.bad_payloads == 1


async def test_op7_asks_for_a_resume() -> None:
    shard, _ = make_shard()
    shard.feed(dispatch(1, "READY", READY))
    shard.feed(b'{"op":7,"d":null}')
    assert shard._action is not None
    assert (shard._action.next, shard._action.reason) == (Next.RESUME, Reason.OP7)


async def test_op9_false_drops_the_session_and_identifies() -> None:
    shard, _ = make_shard()
    shard.feed(dispatch(1, "READY", READY))
    shard.feed(b'{"op":9,"d":false}')
    assert shard.session_id is None
    assert shard._action is not None and shard._action.next is Next.IDENTIFY


async def test_op9_true_keeps_the_session() -> None:
    shard, _ = make_shard()
    shard.feed(dispatch(1, "READY", READY))
    shard.feed(b'{"op":9,"d":true}')
    assert shard.session_id == "abc"
    assert shard._action is not None and shard._action.next is Next.RESUME


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
    shard._set_state(ShardState.RESUMING)
    shard.feed(dispatch(41, "MESSAGE_CREATE", {}))
    shard.feed(dispatch(42, "RESUMED", {}))
    assert shard.state is ShardState.CONNECTED
    assert reporter.sessions[-1][1] == "resume"
    assert reporter.sessions[-1][2] == ipc.SessionInfo("old", 42, "ws://127.0.0.1:3")

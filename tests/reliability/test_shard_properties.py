"""Hostile gateway messages through the worker's real receive path (``Shard.feed``), without
a socket: random bytes, corrupt compression, invalid UTF-8 and JSON, valid JSON of the wrong
shape, unknown opcodes and event names, oversized messages. Each one is either handled or
ends the connection with a resume/identify decision; none raises, and every bad payload is
counted in ``counters.bad_payloads`` (reported to the supervisor as ``ShardStats``)."""

from __future__ import annotations

import zlib
from collections import Counter
from typing import Any

import msgspec
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers import ipc
from workers.decisions import Action, Next
from workers.events import DISPATCH_NAMES, OTHER_EVENT, Event
from workers.handlers import Delivery, Handler
from workers.protocol import decode_envelope
from workers.reporter import ShardCounters
from workers.shard import Shard

LIMIT = 32 * 1024
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Permits:
    async def acquire(self, shard_id: int) -> None:
        return None


class _Reporter:
    def __init__(self) -> None:
        self.sessions: list[tuple[int, str]] = []

    def state_changed(self, shard_id: int, state: str) -> None:
        pass

    def session_started(
        self, shard_id: int, kind: str, session: ipc.SessionInfo, guilds: int
    ) -> None:
        self.sessions.append((shard_id, kind))

    def reconnecting(
        self, shard_id: int, reason: str, close_code: int | None, resume: bool, delay_s: float
    ) -> None:
        pass

    def stopped(
        self,
        shard_id: int,
        reason: str,
        close_code: int | None,
        fatal: bool,
        session: ipc.SessionInfo | None,
    ) -> None:
        pass

    def stats(self, shards: list[ipc.ShardStats], rss_bytes: int, cpu_seconds: float) -> None:
        pass


async def _ignore(event: Event) -> None:
    return None


class RecordingDelivery(Delivery):
    """The real backlog, remembering what the receive path pushed into it."""

    def __init__(self) -> None:
        super().__init__(0, Handler(_ignore), ShardCounters(), maxsize=100_000)
        self.pushed: list[Event] = []

    def push(self, event: Event) -> None:
        self.pushed.append(event)
        super().push(event)


def make_shard(compress: str = "none", session: bool = True) -> Shard:
    config = ipc.WorkerConfig(
        worker_id=0,
        token="x",
        gateway_url="ws://127.0.0.1:1",
        num_shards=1,
        shards=[ipc.ShardAssignment(0)],
        intents=0,
        compress=compress,
        max_message_bytes=LIMIT,
    )
    delivery = RecordingDelivery()
    info = ipc.SessionInfo("s" * 32, 5, "ws://127.0.0.1:1") if session else None
    return Shard(
        0, config, permits=_Permits(), reporter=_Reporter(), delivery=delivery, session=info
    )


def pending(shard: Shard) -> Action | None:
    """The decision taken for the current connection (None: it carries on)."""
    action: Action | None = shard.action
    return action


def feed_until_closed(shard: Shard, frames: list[bytes | str]) -> None:
    # The socket loop stops reading once a connection has been told to end; so do we.
    for frame in frames:
        if pending(shard) is not None:
            return
        shard.feed(frame)


def assert_survived(shard: Shard, bad_before: int) -> None:
    """Either nothing went wrong, or the bad payload was counted and the connection ends
    with a decision to come back (never a stop: bad network data is never fatal)."""
    action = pending(shard)
    if shard.counters.bad_payloads > bad_before:
        assert action is not None
    if action is not None:
        assert action.next in (Next.RESUME, Next.IDENTIFY)


def zlib_frames(payloads: list[bytes]) -> list[bytes | str]:
    c = zlib.compressobj()
    return [c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH) for p in payloads]


def zstd_frames(payloads: list[bytes]) -> list[bytes | str]:
    c = zstandard.ZstdCompressor().compressobj()
    return [c.compress(p) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) for p in payloads]


def dispatch(seq: int, name: str = "MESSAGE_CREATE", d: Any = None) -> bytes:
    return msgspec.json.encode({"op": 0, "s": seq, "t": name, "d": d if d is not None else {}})


any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=15,
)
# envelopes whose fields may each be of the wrong type, or missing
wrong_shapes = st.fixed_dictionaries(
    {},
    optional={
        "op": any_json | st.integers(0, 50),
        "d": any_json,
        "s": any_json,
        "t": any_json | st.sampled_from(["READY", "RESUMED", "GUILD_CREATE", "NOT_AN_EVENT"]),
    },
)


@FAST
@given(frames=st.lists(st.binary(max_size=512) | st.text(max_size=200), min_size=1, max_size=6))
def test_random_frames_never_raise_out_of_the_receive_path(frames: list[bytes | str]) -> None:
    for mode in ("none", "zlib-stream", "zstd-stream"):
        shard = make_shard(mode)
        feed_until_closed(shard, frames)
        assert_survived(shard, 0)


@FAST
@given(raw=st.binary(min_size=1, max_size=256))
def test_invalid_utf8_and_json_is_counted_and_closes_for_resume(raw: bytes) -> None:
    shard = make_shard()
    shard.feed(raw)
    try:
        msgspec.json.decode(raw)
        valid = True
    except msgspec.DecodeError:
        valid = False
    if not valid:
        assert shard.counters.bad_payloads == 1
        action = pending(shard)
        assert action is not None and action.next is Next.RESUME


@FAST
@given(doc=wrong_shapes)
def test_valid_json_of_the_wrong_shape_is_handled_or_counted(doc: dict[str, Any]) -> None:
    shard = make_shard()
    shard.feed(msgspec.json.encode(doc))
    assert_survived(shard, 0)
    action = pending(shard)
    if action is None or action.next is not Next.IDENTIFY:
        # only a deliberate session drop (op 9 false) resets the sequence
        assert shard.seq >= 5, "a bad message must never move the sequence backwards"


@FAST
@given(doc=wrong_shapes, mode=st.sampled_from(["zlib-stream", "zstd-stream"]))
def test_wrong_shapes_inside_compressed_streams_are_survived(
    doc: dict[str, Any], mode: str
) -> None:
    shard = make_shard(mode)
    payloads = [dispatch(6), msgspec.json.encode(doc), dispatch(7)]
    frames = zlib_frames(payloads) if mode == "zlib-stream" else zstd_frames(payloads)
    feed_until_closed(shard, frames)
    assert_survived(shard, 0)


@FAST
@given(op=st.integers(12, 2**31).filter(lambda op: op not in (31, 43)))
def test_unknown_opcodes_are_ignored_without_closing(op: int) -> None:
    shard = make_shard()
    shard.feed(msgspec.json.encode({"op": op, "d": {"x": 1}, "s": None, "t": None}))
    assert pending(shard) is None
    assert shard.counters.bad_payloads == 0


@FAST
@given(
    names=st.lists(
        st.text(min_size=1, max_size=30).filter(lambda n: n not in ("READY", "RESUMED")),
        min_size=1,
        max_size=10,
    )
)
def test_unknown_event_names_are_delivered_in_order_and_keep_their_seq(names: list[str]) -> None:
    shard = make_shard()
    for i, name in enumerate(names):
        shard.feed(dispatch(6 + i, name))
    assert pending(shard) is None
    assert shard.seq == 5 + len(names)
    assert shard.delivery.backlog == len(names)
    # Counted under their own name only when documented: names come from the network.
    folded = Counter(n if n in DISPATCH_NAMES else OTHER_EVENT for n in names)
    assert shard.counters.events == folded


@pytest.mark.parametrize("value", [2**53, 2**64, -(2**64), 2**200, -1])
def test_out_of_range_seqs_are_bad_payloads_and_never_move_the_seq(value: int) -> None:
    shard = make_shard()
    shard.feed(msgspec.json.encode({"op": 0, "s": value, "t": "MESSAGE_CREATE", "d": {}}))
    assert shard.counters.bad_payloads == 1
    assert shard.seq == 5
    assert shard.delivery.backlog == 0


@pytest.mark.parametrize("value", [2**64, 2**200, -(2**64)])
def test_huge_opcodes_are_ignored_as_unknown(value: int) -> None:
    shard = make_shard()
    shard.feed(msgspec.json.encode({"op": value, "s": None, "t": None, "d": None}))
    assert pending(shard) is None
    shard.feed(dispatch(6))
    assert shard.seq == 6


@pytest.mark.parametrize("depth", [100, 5_000, 200_000])
def test_deeply_nested_bodies_never_raise(depth: int) -> None:
    shard = make_shard()
    body = b"[" * depth + b"]" * depth
    shard.feed(b'{"op":0,"s":6,"t":"MESSAGE_CREATE","d":' + body + b"}")
    assert_survived(shard, 0)


def test_op_as_a_string_is_a_bad_payload() -> None:
    shard = make_shard()
    shard.feed(b'{"op":"0","s":6,"t":"MESSAGE_CREATE","d":{}}')
    assert shard.counters.bad_payloads == 1
    action = pending(shard)
    assert action is not None and action.next is Next.RESUME


def test_missing_d_is_handled() -> None:
    shard = make_shard()
    shard.feed(b'{"op":0,"s":6,"t":"MESSAGE_CREATE"}')
    assert pending(shard) is None
    assert shard.seq == 6


@pytest.mark.parametrize(
    "body",
    [b'{"op":10,"d":"soon"}', b'{"op":10,"d":{}}', b'{"op":10,"d":{"heartbeat_interval":"x"}}'],
)
def test_malformed_hello_is_a_bad_payload(body: bytes) -> None:
    shard = make_shard()
    shard.feed(body)
    assert shard.counters.bad_payloads == 1
    assert pending(shard) is not None


def test_malformed_ready_is_a_bad_payload_and_not_delivered() -> None:
    shard = make_shard(session=False)
    shard.feed(b'{"op":0,"s":1,"t":"READY","d":{"session_id":7}}')
    assert shard.counters.bad_payloads == 1
    assert shard.delivery.backlog == 0
    action = pending(shard)
    assert action is not None and action.next in (Next.RESUME, Next.IDENTIFY)


@pytest.mark.parametrize("d", [b'"yes"', b"{}", b"null", b"1"])
def test_invalid_session_with_a_non_boolean_is_taken_as_false(d: bytes) -> None:
    shard = make_shard()
    shard.feed(b'{"op":9,"d":' + d + b"}")
    action = pending(shard)
    assert action is not None and action.next is Next.IDENTIFY


@pytest.mark.parametrize("mode", ["none", "zlib-stream", "zstd-stream"])
def test_oversized_messages_close_for_resume_and_are_counted(mode: str) -> None:
    shard = make_shard(mode)
    big = dispatch(6, d={"blob": "x" * (LIMIT * 2)})
    frames = {"none": [big], "zlib-stream": zlib_frames([big]), "zstd-stream": zstd_frames([big])}
    feed_until_closed(shard, frames[mode])
    assert shard.counters.bad_payloads == 1
    action = pending(shard)
    assert action is not None and action.next is Next.RESUME
    assert shard.seq == 5


def test_oversized_text_frame_is_counted() -> None:
    shard = make_shard()
    shard.feed(dispatch(6, d={"blob": "x" * (LIMIT * 2)}).decode())
    assert shard.counters.bad_payloads == 1


def test_a_zlib_message_without_suffix_is_cut_at_the_limit() -> None:
    shard = make_shard("zlib-stream")
    chunk = zlib.compressobj().compress(b"y" * 10) + b"\x07" * 1000
    fed = 0
    while pending(shard) is None:
        shard.feed(chunk)
        fed += len(chunk)
        assert fed <= LIMIT + len(chunk)
    assert shard.counters.bad_payloads == 1


def pushed(shard: Shard) -> list[Event]:
    delivery = shard.delivery
    assert isinstance(delivery, RecordingDelivery)
    return delivery.pushed


def _is_sequenced_dispatch(doc: bytes) -> bool:
    """Noise must not itself be a valid dispatch with a seq (that would rightly move seq)."""
    try:
        env = decode_envelope(doc)
    except msgspec.DecodeError:
        return False
    return env.op == 0 and env.s is not None


noise = st.one_of(
    st.binary(max_size=40),
    wrong_shapes.map(msgspec.json.encode).filter(lambda d: not _is_sequenced_dispatch(d)),
    st.integers(12, 30).map(lambda op: b'{"op":%d,"d":null}' % op),
    st.just(b'{"op":11,"d":null}'),
)
# None marks "the next valid dispatch"; anything else is noise to ignore or to close on
stream_items = st.lists(st.none() | noise, max_size=30)


@FAST
@given(items=stream_items, mode=st.sampled_from(["none", "zlib-stream", "zstd-stream"]))
def test_valid_events_among_hostile_noise_arrive_once_in_order_until_the_close(
    items: list[bytes | None], mode: str
) -> None:
    shard = make_shard(mode)
    payloads: list[bytes] = []
    valid: list[int | None] = []  # per payload: its seq if it is a valid dispatch
    seq = 5
    for item in items:
        if item is None:
            seq += 1
            payloads.append(dispatch(seq))
            valid.append(seq)
        else:
            payloads.append(item)
            valid.append(None)
    frames = {
        "none": list[bytes | str](payloads),
        "zlib-stream": zlib_frames(payloads),
        "zstd-stream": zstd_frames(payloads),
    }[mode]
    fed: list[int] = []
    for frame, seq_of in zip(frames, valid, strict=True):
        if pending(shard) is not None:
            break  # the socket loop reads nothing more from a connection it is closing
        shard.feed(frame)
        if seq_of is not None:
            fed.append(seq_of)
    assert_survived(shard, 0)
    got = [e.seq for e in pushed(shard)]
    # every valid dispatch fed before the close arrived exactly once, in order
    assert [s for s in got if s is not None and s > 5] == fed
    action = pending(shard)
    if action is None or action.next is not Next.IDENTIFY:
        assert shard.seq == max([5, *fed])

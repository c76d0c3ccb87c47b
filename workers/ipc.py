"""The supervisor <-> worker vocabulary: every IPC message, and the frame format.

One duplex pipe (a socketpair) per worker; each frame is a 4-byte big-endian length
followed by a msgpack-encoded member of the tagged unions below. Every message carries
the worker's ``gen`` (generation) so the supervisor can drop messages from a process it
has already replaced.

This module lives in ``workers`` (the lower tower) because both ends import it and the
worker must not import the supervisor package. The REST-limit messages live in
``workers.ipc_rest`` and the cluster-call ones in ``workers.ipc_cluster``; both are
re-exported here, and the unions below list every message.
"""

from __future__ import annotations

import asyncio
import enum
import struct
from typing import Final

import msgspec

from workers.ipc_cluster import CallAnswer as CallAnswer
from workers.ipc_cluster import CallOutcome as CallOutcome
from workers.ipc_cluster import CallReply as CallReply
from workers.ipc_cluster import CallTarget as CallTarget
from workers.ipc_cluster import ClusterCall as ClusterCall
from workers.ipc_cluster import RunCall as RunCall
from workers.ipc_cluster import RunResult as RunResult
from workers.ipc_rest import RestBucket as RestBucket
from workers.ipc_rest import RestClaim as RestClaim
from workers.ipc_rest import RestGlobalAsk as RestGlobalAsk
from workers.ipc_rest import RestGlobalGrant as RestGlobalGrant
from workers.ipc_rest import RestKeyState as RestKeyState
from workers.ipc_rest import RestOwned as RestOwned
from workers.ipc_rest import RestRelease as RestRelease
from workers.ipc_rest import RestRouteCount as RestRouteCount
from workers.ipc_rest import RestStats as RestStats
from workers.ipc_rest import RestToSupervisor as RestToSupervisor
from workers.ipc_rest import RestToWorker as RestToWorker
from workers.ipc_rest import RestYield as RestYield

MAX_FRAME: Final = 16 * 1024 * 1024
_HEADER: Final = struct.Struct(">I")


class ShardState(enum.StrEnum):
    """Where a shard's connection stands; ``workers.shard`` holds which may follow which."""

    IDLE = "idle"
    CONNECTING = "connecting"
    IDENTIFYING = "identifying"
    RESUMING = "resuming"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    WAITING_PERMIT = "waiting_permit"
    STOPPED = "stopped"


class Reason(enum.StrEnum):
    """Why a shard reconnects (``Reconnecting.reason``)."""

    CLOSE_CODE = "close_code"
    ZOMBIE = "zombie"
    OP7 = "op7"
    OP9 = "op9"
    NETWORK = "network"
    BAD_PAYLOAD = "bad_payload"
    TIMEOUT = "timeout"


class SessionInfo(msgspec.Struct, frozen=True):
    """What another process needs to RESUME a shard's session."""

    session_id: str
    seq: int
    resume_url: str


class PoisonSkip(msgspec.Struct, frozen=True):
    """An event (a batch: first..last) of the resumed session that killed the shard's
    worker twice: delivered past, to the dead letters, instead of to the handler."""

    first_seq: int
    last_seq: int


class ShardAssignment(msgspec.Struct, frozen=True):
    shard_id: int
    session: SessionInfo | None = None
    skip: PoisonSkip | None = None


class WorkerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a worker needs to run its shard group. Sent once, over the pipe, so the
    token never appears on a command line."""

    worker_id: int
    token: str
    gateway_url: str
    num_shards: int
    shards: list[ShardAssignment]
    intents: int
    handler: str = "shardmgr.handlers:null"
    compress: str = "zlib-stream"  # "zlib-stream" | "zstd-stream" | "payload" | "none"
    large_threshold: int = 250
    max_message_bytes: int = 64 * 1024 * 1024
    handler_backlog: int = 1000
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    backoff_stable_s: float = 60.0
    hello_timeout_s: float = 60.0
    ready_timeout_s: float = 15.0
    report_interval_s: float = 1.0
    log_level: str = "INFO"
    log_json: bool = False
    # --- added by the worker (issue 3); all optional ---
    # discordrb's switch: False turns zombie detection (the heartbeat ACK check) off
    check_heartbeat_acks: bool = True
    # the close code sent when a zombie connection is dropped (must keep the session)
    zombie_close_code: int = 4000
    # Identify ``properties``: keys os / browser / device (defaults: platform, "shardmgr")
    identify_properties: dict[str, str] = {}
    # initial presence sent in Identify: a JSON object as in op 3 (None: leave it out)
    presence: dict[str, object] | None = None
    # how long our own close handshake may take before the socket is dropped
    close_timeout_s: float = 2.0
    # events per ``handle_batch`` call for handlers that define it
    handler_batch: int = 100
    # on stop/suspend: how long queued events may take to reach the handler
    drain_timeout_s: float = 5.0
    # op 7 / zombie after a connection that reached READY/RESUMED: reconnect within this
    # (full jitter) instead of the exponential backoff, which is for failing connections
    reconnect_quick_s: float = 1.0
    # --- added by the REST client (issue 14); all optional ---
    # REST base URL (the supervisor's ``api_base``; a fake gateway's in tests)
    api_base: str = "https://discord.com/api/v10"
    # this worker's share of the invalid-request guard (401/403/429 per 10 minutes)
    rest_invalid_limit: int = 2000
    # --- added by the sink (issue 22) ---
    # the --sink URL (with its password): over the pipe, never in the worker's environment;
    # given to a handler that has ``use_url(url)`` (shardmgr.sinks.redis_stream)
    sink_url: str | None = None

    # --- added by cluster calls (issue 16) ---
    # how long a command to another worker's shard, or a cluster call, may wait for an answer
    command_timeout_s: float = 10.0
    call_timeout_s: float = 10.0
    # the largest encoded arguments or result of one cluster call
    call_max_bytes: int = 1024 * 1024
    # --- poison events (issue 15, workers.inflight / workers.watchdog) ---
    # the file the worker maps to show what each shard's handler is inside (None: none)
    inflight_file: str | None = None
    # the event loop not turning for this long is logged with the stack (watchdog)
    loop_stall_s: float = 5.0
    # --- added by the reshard (issue 19) ---
    # a shard set started beside the running one: hold events (newest ``handler_backlog``
    # per shard) until ``Deliver``, since the old set delivers them until the switch
    hold_delivery: bool = False


# ---------------------------------------------------------------- supervisor -> worker


class Start(msgspec.Struct, tag="start", kw_only=True):
    """``standby``: load the handler and run its ``start()``, report ``Ready`` (or
    ``LoadFailed``), then wait for ``Activate`` before connecting any shard (a canary)."""

    gen: int
    config: WorkerConfig
    standby: bool = False


class Activate(msgspec.Struct, tag="activate", kw_only=True):
    """To a standby worker: run these shards (their sessions as the old worker left them)."""

    gen: int
    shards: list[ShardAssignment]


class Ping(msgspec.Struct, tag="ping", kw_only=True):
    gen: int
    nonce: int


class IdentifyGrant(msgspec.Struct, tag="identify_grant", kw_only=True):
    gen: int
    shard_id: int
    nonce: int


class IdentifyRefused(msgspec.Struct, tag="identify_refused", kw_only=True):
    """The budget cannot pay for this identify (reserve reached); the shard stops."""

    gen: int
    shard_id: int
    nonce: int
    reason: str


class SendCommand(msgspec.Struct, tag="send_command", kw_only=True):
    """A gateway command (op 3, 4, 8, or a custom one) for one shard, ``d`` as JSON bytes.
    Answered by ``CommandQueued`` with the same ``nonce``."""

    gen: int
    shard_id: int
    op: int
    d: bytes
    nonce: int = 0


class Shutdown(msgspec.Struct, tag="shutdown", kw_only=True):
    """Close every shard. ``keep_sessions``: suspend (resumable close) and report sessions."""

    gen: int
    keep_sessions: bool = False


class ReplayEvent(msgspec.Struct, tag="replay_event", kw_only=True):
    """Hand a dead-lettered event to the handler again; answered by ``Replayed``."""

    gen: int
    nonce: int
    shard_id: int
    seq: int
    t: str
    d: bytes


class Deliver(msgspec.Struct, tag="deliver", kw_only=True):
    """The reshard's switch: start delivering. Held events received within ``overlap_s``
    before this message are delivered (at least once around the switch), older ones are
    dropped (the old set delivered them). Answered by ``Delivering``."""

    gen: int
    overlap_s: float


ToWorker = (
    Start
    | Activate
    | Ping
    | IdentifyGrant
    | IdentifyRefused
    | SendCommand
    | Shutdown
    | RestGlobalGrant
    | RestOwned
    | RestYield
    | RunCall
    | CallReply
    | ReplayEvent
    | Deliver
)


# ---------------------------------------------------------------- worker -> supervisor


class Started(msgspec.Struct, tag="started", kw_only=True):
    gen: int
    worker_id: int
    pid: int


class Ready(msgspec.Struct, tag="ready", kw_only=True):
    """A standby worker loaded the handler and its ``start()`` returned."""

    gen: int
    pid: int


class LoadFailed(msgspec.Struct, tag="load_failed", kw_only=True):
    """A standby worker could not load the handler or its ``start()`` raised; it exits."""

    gen: int
    handler: str
    reason: str  # one line


class Pong(msgspec.Struct, tag="pong", kw_only=True):
    gen: int
    nonce: int


class IdentifyRequest(msgspec.Struct, tag="identify_request", kw_only=True):
    gen: int
    shard_id: int
    nonce: int


class IdentifyRelease(msgspec.Struct, tag="identify_release", kw_only=True):
    """Gives back an identify request: its wait was abandoned, or its grant will not be
    used (socket closed before the IDENTIFY went out): free its place in the queue or its
    bucket."""

    gen: int
    shard_id: int
    nonce: int


class IdentifySent(msgspec.Struct, tag="identify_sent", kw_only=True):
    """The gateway has read the granted IDENTIFY (its READY or op 9 arrived, or the
    connection is gone): Discord's window for the bucket started no later than now, so the
    supervisor times the bucket's next grant from here."""

    gen: int
    shard_id: int
    nonce: int


class CommandQueued(msgspec.Struct, tag="command_queued", kw_only=True):
    """The answer to ``SendCommand``: queued for the shard's connection, or refused because
    the shard's bounded command queue is full (retry after ``retry_after_s``)."""

    gen: int
    shard_id: int
    nonce: int
    queued: bool
    retry_after_s: float = 0.0


class ShardStateChanged(msgspec.Struct, tag="shard_state", kw_only=True):
    gen: int
    shard_id: int
    state: ShardState
    at: float  # wall-clock seconds


class SessionStarted(msgspec.Struct, tag="session_started", kw_only=True):
    """READY (kind="identify") or RESUMED (kind="resume")."""

    gen: int
    shard_id: int
    kind: str
    session: SessionInfo
    guilds: int
    at: float


class Reconnecting(msgspec.Struct, tag="reconnecting", kw_only=True):
    gen: int
    shard_id: int
    reason: Reason
    close_code: int | None
    resume: bool
    delay_s: float


class ShardStopped(msgspec.Struct, tag="shard_stopped", kw_only=True):
    """A shard stopped for good (fatal close code, refused identify, or shutdown)."""

    gen: int
    shard_id: int
    reason: str
    close_code: int | None
    fatal: bool
    session: SessionInfo | None = None


class ShardStats(msgspec.Struct, kw_only=True):
    """One shard's counters since the previous report (deltas) plus current gauges."""

    shard_id: int
    latencies_s: list[float] = []
    events: dict[str, int] = {}
    bytes_compressed: int = 0
    bytes_inflated: int = 0
    handler_errors: int = 0
    bad_payloads: int = 0
    backlog: int = 0
    guilds: int = 0
    # wall time of the last event, to one stats interval; None: none since the last report
    last_event_at: float | None = None
    # the checkpoint: seq of the last event the handler finished (at-least-once delivery)
    session: SessionInfo | None = None
    # --- added by the worker (review): deltas like the counters above ---
    # replayed dispatches dropped as already received
    duplicates: int = 0
    # events dropped after their replay failed to decode again and again (logged)
    skipped: int = 0
    # IDENTIFY / RESUME payloads sent
    identifies: int = 0
    resumes: int = 0
    # payloads that did not fit their typed model (workers.models); the handler got them raw
    model_errors: int = 0


class Delivering(msgspec.Struct, tag="delivering", kw_only=True):
    """Reply to ``Deliver``: held events now delivered (the old set may have delivered
    them too: the switch's duplicates) and dropped (the old set delivered them)."""

    gen: int
    released: int
    dropped: int


class Stats(msgspec.Struct, tag="stats", kw_only=True):
    """Batched about once a second; never one IPC message per event."""

    gen: int
    shards: list[ShardStats]
    rss_bytes: int = 0
    cpu_seconds: float = 0.0
    # how late the event loop woke for the stats tick (blocking code in a handler)
    loop_lag_s: float = 0.0


class Suspended(msgspec.Struct, tag="suspended", kw_only=True):
    """Reply to Shutdown(keep_sessions=True): the sessions to resume later."""

    gen: int
    sessions: dict[int, SessionInfo]


class DeadLettered(msgspec.Struct, tag="dead_lettered", kw_only=True):
    """The worker delivered past a poison event (``ShardAssignment.skip``): its payload,
    for the supervisor's dead-letter file."""

    gen: int
    shard_id: int
    seq: int
    t: str
    d: bytes


class Replayed(msgspec.Struct, tag="replayed", kw_only=True):
    """The answer to ``ReplayEvent``: ``error`` is None when the handler returned."""

    gen: int
    nonce: int
    error: str | None = None


ToSupervisor = (
    Started
    | Ready
    | LoadFailed
    | Pong
    | IdentifyRequest
    | IdentifyRelease
    | IdentifySent
    | CommandQueued
    | ShardStateChanged
    | SessionStarted
    | Reconnecting
    | ShardStopped
    | Stats
    | Suspended
    | RestGlobalAsk
    | RestClaim
    | RestRelease
    | RestStats
    | ClusterCall
    | RunResult
    | DeadLettered
    | Replayed
    | Delivering
)

_encoder: Final = msgspec.msgpack.Encoder()
_to_worker: Final[msgspec.msgpack.Decoder[ToWorker]] = msgspec.msgpack.Decoder(ToWorker)
_to_supervisor: Final[msgspec.msgpack.Decoder[ToSupervisor]] = msgspec.msgpack.Decoder(ToSupervisor)


class FrameError(Exception):
    """The peer sent a frame that is too large or not a known message."""


def frame(msg: ToWorker | ToSupervisor) -> bytes:
    body = _encoder.encode(msg)
    return _HEADER.pack(len(body)) + body


async def _read_body(reader: asyncio.StreamReader) -> bytes | None:
    """One frame's body, or None at a clean EOF between frames."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FrameError("pipe closed inside a frame header") from exc
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise FrameError("pipe closed inside a frame") from exc


async def read_to_worker(reader: asyncio.StreamReader) -> ToWorker | None:
    body = await _read_body(reader)
    if body is None:
        return None
    try:
        return _to_worker.decode(body)
    except msgspec.DecodeError as exc:
        raise FrameError(f"undecodable message: {exc}") from exc


async def read_to_supervisor(reader: asyncio.StreamReader) -> ToSupervisor | None:
    body = await _read_body(reader)
    if body is None:
        return None
    try:
        return _to_supervisor.decode(body)
    except msgspec.DecodeError as exc:
        raise FrameError(f"undecodable message: {exc}") from exc

"""Server-side session state: sessions with their replay buffers, the identify buckets
(``shard_id % max_concurrency``, one identify per window) and the daily session-start budget.

Pure bookkeeping on an injected clock; no sockets here."""

from __future__ import annotations

import collections
import time
import uuid
from typing import TYPE_CHECKING, Any, Final, Literal

from workers.clock import Clock

if TYPE_CHECKING:
    from fakegateway.traffic import ShardTraffic
    from fakegateway.world import FakeUser

SessionState = Literal["active", "disconnected", "ended"]


class Session:
    """One gateway session: identity, sequence numbers, replay buffer, fate."""

    __slots__ = (
        "bot",
        "buffer",
        "connection_id",
        "connections",
        "disconnected_at",
        "ended_at",
        "ended_reason",
        "identified_at",
        "identified_mono",
        "identifies",
        "intents",
        "invalidated_by_server",
        "large_threshold",
        "last_seq_sent",
        "num_shards",
        "payload_compress",
        "replayed",
        "requests_by_op",
        "resumes",
        "resumes_wrong_url",
        "seq",
        "session_id",
        "shard_id",
        "state",
        "traffic",
    )

    def __init__(
        self,
        *,
        shard_id: int,
        num_shards: int,
        intents: int,
        bot: FakeUser,
        replay_buffer: int,
        now_mono: float,
        identifies: int,
        payload_compress: bool = False,
        large_threshold: int = 50,
    ) -> None:
        self.session_id = uuid.uuid4().hex
        self.shard_id = shard_id
        self.num_shards = num_shards
        self.intents = intents
        self.bot = bot
        self.payload_compress = payload_compress
        self.large_threshold = large_threshold
        self.identified_at = time.time()
        self.identified_mono = now_mono
        self.identifies = identifies
        self.seq = 0
        self.last_seq_sent = 0
        self.buffer: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=replay_buffer)
        self.state: SessionState = "active"
        self.ended_reason: str | None = None
        self.ended_at: float | None = None
        self.invalidated_by_server = False
        self.disconnected_at: float | None = None
        self.resumes = 0
        self.resumes_wrong_url = 0
        self.replayed = 0
        self.connections = 1
        self.connection_id: int | None = None
        self.traffic: ShardTraffic | None = None
        # Client requests this session sent (op 3/4/8/31/43), by opcode: which shard got what.
        self.requests_by_op: collections.Counter[str] = collections.Counter()

    def dispatch(self, event: str, body: bytes) -> tuple[int, bytes]:
        """Assign the next sequence number, build the wire payload, keep it for replay."""
        self.seq += 1
        seq = self.seq
        payload = b'{"t":"%s","s":%d,"op":0,"d":%s}' % (event.encode(), seq, body)
        self.buffer.append((seq, payload))
        return seq, payload

    def replay_after(self, seq: int) -> list[tuple[int, bytes]] | None:
        """Every buffered dispatch with ``s > seq``, or None if some were already evicted."""
        if seq == self.seq:
            return []
        if not self.buffer or self.buffer[0][0] > seq + 1:
            return None
        return [entry for entry in self.buffer if entry[0] > seq]

    def end(self, reason: str, *, by_server: bool) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.ended_reason = reason
        self.ended_at = time.time()
        self.invalidated_by_server = by_server
        self.connection_id = None
        self.buffer.clear()

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "shard_id": self.shard_id,
            "num_shards": self.num_shards,
            "state": self.state,
            "connected": self.connection_id is not None,
            "identified_at": self.identified_at,
            "identifies": self.identifies,
            "resumes": self.resumes,
            "resumes_wrong_url": self.resumes_wrong_url,
            "replayed": self.replayed,
            "connections": self.connections,
            "first_seq": 1,
            "last_seq": self.seq,
            "last_seq_sent": self.last_seq_sent,
            "intents": self.intents,
            "ended_reason": self.ended_reason,
            "ended_at": self.ended_at,
            "invalidated_by_server": self.invalidated_by_server,
            "requests_by_op": dict(self.requests_by_op),
        }


class SessionStore:
    """Every session since start, active or not; expiry of disconnected ones is lazy (on
    every lookup) plus a periodic sweep by the server."""

    def __init__(self, clock: Clock, ttl_s: float) -> None:
        self._clock = clock
        self.ttl_s = ttl_s
        self.all: list[Session] = []
        self.by_id: dict[str, Session] = {}
        self._per_shard: collections.Counter[tuple[int, int]] = collections.Counter()

    def count_identify(self, shard_id: int, num_shards: int) -> int:
        self._per_shard[(shard_id, num_shards)] += 1
        return self._per_shard[(shard_id, num_shards)]

    def add(self, session: Session) -> None:
        self.all.append(session)
        self.by_id[session.session_id] = session

    def get(self, session_id: str) -> Session | None:
        session = self.by_id.get(session_id)
        if session is not None:
            self.expire_one(session)
        return session

    def expire_one(self, session: Session) -> bool:
        if (
            session.state == "disconnected"
            and session.disconnected_at is not None
            and self._clock.monotonic() - session.disconnected_at >= self.ttl_s
        ):
            session.end("expired", by_server=True)
            return True
        return False

    def sweep(self) -> int:
        return sum(1 for s in self.all if s.state == "disconnected" and self.expire_one(s))

    def disconnected(self, session: Session) -> None:
        session.state = "disconnected"
        session.connection_id = None
        session.disconnected_at = self._clock.monotonic()


class IdentifyBuckets:
    """One identify per ``shard_id % max_concurrency`` bucket per window."""

    def __init__(self, clock: Clock, max_concurrency: int, window_s: float) -> None:
        self._clock = clock
        self.max_concurrency = max_concurrency
        self.window_s = window_s
        self._last: dict[int, float] = {}

    def bucket(self, shard_id: int) -> int:
        return shard_id % self.max_concurrency

    def try_acquire(self, shard_id: int) -> bool:
        key = self.bucket(shard_id)
        now = self._clock.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            return False
        self._last[key] = now
        return True


class Budget:
    """``session_start_limit``: starts left, refilled ``reset_after_s`` after the first
    start of a window (twilight's model of Discord's 24 h window)."""

    def __init__(self, clock: Clock, total: int, remaining: int, reset_after_s: float) -> None:
        self._clock = clock
        self.total = total
        self.remaining = remaining
        self.reset_after_s = reset_after_s
        self._window_start: float | None = None if remaining == total else clock.monotonic()

    def _refresh(self) -> None:
        start = self._window_start
        if start is not None and self._clock.monotonic() - start >= self.reset_after_s:
            self.remaining = self.total
            self._window_start = None

    def spend(self) -> bool:
        self._refresh()
        if self.remaining <= 0:
            return False
        if self._window_start is None:
            self._window_start = self._clock.monotonic()
        self.remaining -= 1
        return True

    def set(self, remaining: int | None = None, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        if remaining is not None:
            self.remaining = remaining
        self._window_start = None if self.remaining >= self.total else self._clock.monotonic()

    def snapshot(self) -> dict[str, int]:
        self._refresh()
        if self._window_start is None:
            reset_ms = int(self.reset_after_s * 1000)
        else:
            left = self.reset_after_s - (self._clock.monotonic() - self._window_start)
            reset_ms = max(0, int(left * 1000))
        return {"total": self.total, "remaining": self.remaining, "reset_after": reset_ms}


SESSION_ENDING_CLOSE_CODES: Final = frozenset(
    {4003, 4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014}
)

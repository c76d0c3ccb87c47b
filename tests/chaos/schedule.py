"""The seeded fault schedule of a chaos run: a pure function of (seed, duration, topology).

Faults are dealt from a shuffled deck holding every kind once, reshuffled when it runs out,
so even a short run exercises each kind and a long one exercises each many times. They fall
between a warm-up (all shards connect first) and a quiet tail (everything gets to recover
before the checks); process-level faults keep a minimum distance from each other so the
supervisor is judged on recovery, not on an arbitrarily dense pile-up.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from typing import Any, Final


class Kind(enum.StrEnum):
    # gateway-level (POST /_fake/faults), aimed at one shard's connection
    CLOSE_4000 = "close_4000"
    CLOSE_4001 = "close_4001"
    CLOSE_4002 = "close_4002"
    CLOSE_4003 = "close_4003"
    CLOSE_4007 = "close_4007"
    CLOSE_4009 = "close_4009"
    CUT = "cut"  # TCP dropped without a close frame (1006)
    RECONNECT = "reconnect"  # op 7
    INVALID_SESSION_TRUE = "invalid_session_true"
    INVALID_SESSION_FALSE = "invalid_session_false"
    ZOMBIE = "zombie"  # ACKs stop
    STALL = "stall"  # everything stops
    BAD_JSON = "bad_json"
    BAD_COMPRESSION = "bad_compression"
    LARGE_MESSAGE = "large_message"  # a multi-hundred-KiB dispatch (within the worker's limit)
    NO_SUFFIX = "no_suffix"  # a zlib message that never ends, then silence
    HELLO_RECONNECT = "hello_reconnect"  # op 7 instead of Hello on the next connection
    # REST (POST /_fake/rest-faults): discovery answers 429 a few times
    REST_429 = "rest_429"
    # supervisor level
    KILL9 = "kill9"
    SIGSTOP = "sigstop"
    ROLLING_RESTART = "rolling_restart"
    # a rolling restart to a handler with a syntax error (refused), then to the fixed one
    BAD_DEPLOY = "bad_deploy"
    # one marked message to a shard's guild that the bot's handler chokes on (tests/chaos/bot.py):
    # its worker crashes (or hangs) twice on it, then the successor dead-letters it
    POISON_EVENT = "poison_event"


PROCESS_KINDS: Final = frozenset(
    {Kind.KILL9, Kind.SIGSTOP, Kind.ROLLING_RESTART, Kind.BAD_DEPLOY, Kind.POISON_EVENT}
)
# faults after which the protocol requires a new IDENTIFY (each costs an identify window)
IDENTIFY_KINDS: Final = frozenset(
    {Kind.CLOSE_4003, Kind.CLOSE_4007, Kind.CLOSE_4009, Kind.INVALID_SESSION_FALSE}
)


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float  # seconds after the run's start
    kind: Kind
    shard_id: int | None = None  # gateway-level faults
    worker: int | None = None  # process-level faults: index into the worker list at that time
    duration_s: float = 0.0  # SIGSTOP: how long the process stays stopped
    size: int = 0  # LARGE_MESSAGE / NO_SUFFIX: bytes
    via_signal: bool = False  # ROLLING_RESTART: SIGHUP to the supervisor instead of HTTP
    hang: bool = False  # POISON_EVENT: the handler blocks on it instead of exiting

    def gateway_request(self) -> tuple[str, dict[str, Any]] | None:
        """The fake gateway control request this fault maps to: (path, JSON body)."""
        k = self.kind
        if k in PROCESS_KINDS:
            return None
        if k is Kind.REST_429:
            return "/_fake/rest-faults", {"status": 429, "count": 2, "retry_after": 0.2}
        body: dict[str, Any] = {"shard_id": self.shard_id}
        if k.value.startswith("close_"):
            body |= {"kind": "close", "code": int(k.value.removeprefix("close_"))}
        elif k is Kind.INVALID_SESSION_TRUE:
            body |= {"kind": "invalid_session", "resumable": True}
        elif k is Kind.INVALID_SESSION_FALSE:
            body |= {"kind": "invalid_session", "resumable": False}
        elif k is Kind.LARGE_MESSAGE:
            # the fake's "oversized" fault is a real dispatch of this many bytes; the chaos
            # run keeps it under the worker's limit (a message beyond the limit can never be
            # delivered, which tests/reliability/test_gateway_faults.py covers on its own)
            body |= {"kind": "oversized", "bytes": self.size}
        elif k is Kind.NO_SUFFIX:
            body |= {"kind": "no_suffix", "bytes": self.size}
        else:
            body |= {"kind": k.value}
        return "/_fake/faults", body

    def describe(self) -> str:
        target = (
            f" shard={self.shard_id}"
            if self.shard_id is not None
            else f" worker={self.worker}"
            if self.worker is not None
            else ""
        )
        extra = f" for {self.duration_s:.1f}s" if self.duration_s else ""
        extra += " via SIGHUP" if self.via_signal else ""
        extra += (" hang" if self.hang else " crash") if self.kind is Kind.POISON_EVENT else ""
        extra += f" bytes={self.size}" if self.size else ""
        return f"t+{self.at_s:6.1f}s {self.kind.value}{target}{extra}"


MIN_GAP_S: Final = 0.6


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    duration_s: float
    shards: int
    workers: int
    warmup_s: float = 3.0
    quiet_tail_s: float = 10.0
    mean_gap_s: float = 1.5
    process_gap_s: float = 4.0  # minimum distance between two process-level faults
    max_stop_s: float = 3.0
    large_message_bytes: tuple[int, int] = (256 << 10, 1 << 20)
    no_suffix_bytes: tuple[int, int] = (64 << 10, 256 << 10)


def make_schedule(seed: int, cfg: ScheduleConfig) -> list[Fault]:
    if cfg.shards < 1 or cfg.workers < 1:
        raise ValueError("a schedule needs at least one shard and one worker")
    rng = random.Random(seed)
    start = cfg.warmup_s
    usable = cfg.duration_s - cfg.quiet_tail_s - start
    if usable <= 0:
        return []
    slots = int(usable / cfg.mean_gap_s)
    if slots < len(Kind):
        # a short run still deals one full deck when the faults can be that dense
        slots = max(slots, min(len(Kind), int(usable / MIN_GAP_S)))
    if slots == 0:
        return []
    step = usable / slots
    # slot i fires at start + (i + jitter) * step with jitter in [0.2, 0.8), so slots k apart
    # are at least (k - 0.6) * step apart; space process faults that many slots
    spacing = math.ceil(cfg.process_gap_s / step + 0.6)
    kinds: list[Kind] = []
    while len(kinds) < slots:
        kinds += _deck(rng, spacing)
    faults: list[Fault] = []
    last_process = -math.inf
    for i, kind in enumerate(kinds[:slots]):
        at = round(start + (i + rng.uniform(0.2, 0.8)) * step, 3)
        if kind in PROCESS_KINDS:
            if at - last_process < cfg.process_gap_s:
                continue  # only when the run is too short to space them; skip, never pile up
            last_process = at
        faults.append(_fault(rng, at, kind, cfg))
    return faults


def _deck(rng: random.Random, spacing: int) -> list[Kind]:
    """Every kind once, shuffled, the process kinds at least ``spacing`` places apart (also
    across the boundary to the next deck) whenever the deck is long enough for that."""
    gateway = [k for k in Kind if k not in PROCESS_KINDS]
    process = [k for k in Kind if k in PROCESS_KINDS]
    rng.shuffle(gateway)
    rng.shuffle(process)
    seg = len(Kind) // len(process)
    room = max(0, seg - spacing)
    deck: list[Kind | None] = [None] * len(Kind)
    for j, kind in enumerate(process):
        deck[j * seg + rng.randint(0, room)] = kind
    rest = iter(gateway)
    return [k if k is not None else next(rest) for k in deck]


def _fault(rng: random.Random, at: float, kind: Kind, cfg: ScheduleConfig) -> Fault:
    if kind is Kind.ROLLING_RESTART:
        return Fault(at, kind, via_signal=rng.random() < 0.5)
    if kind is Kind.KILL9:
        return Fault(at, kind, worker=rng.randrange(cfg.workers))
    if kind is Kind.SIGSTOP:
        stop = round(rng.uniform(0.5, cfg.max_stop_s), 2)
        return Fault(at, kind, worker=rng.randrange(cfg.workers), duration_s=stop)
    if kind in (Kind.REST_429, Kind.BAD_DEPLOY):
        return Fault(at, kind)
    shard = rng.randrange(cfg.shards)
    if kind is Kind.POISON_EVENT:
        return Fault(at, kind, shard_id=shard, hang=rng.random() < 0.5)
    if kind is Kind.LARGE_MESSAGE:
        return Fault(at, kind, shard_id=shard, size=rng.randint(*cfg.large_message_bytes))
    if kind is Kind.NO_SUFFIX:
        return Fault(at, kind, shard_id=shard, size=rng.randint(*cfg.no_suffix_bytes))
    return Fault(at, kind, shard_id=shard)

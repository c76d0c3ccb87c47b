"""What the supervisor knows about each planned shard, from its worker's reports.

The state rules live here once: which state a report implies, and what becomes of a shard
whose worker process is gone. ``/status`` reads this table; the Prometheus metrics apply
the same rules (``state_after`` and ``state_without_worker``) to their own gauges."""

from __future__ import annotations

from typing import Any, Final, assert_never

from workers import ipc
from workers.ipc import ShardState

SHARD_STATES: Final[tuple[str, ...]] = tuple(state.value for state in ShardState)


def state_after(msg: ipc.ToSupervisor) -> tuple[int, str] | None:
    """The shard a report is about and the state it implies, or None if it says nothing
    about a shard's state."""
    match msg:
        case ipc.ShardStateChanged():
            return msg.shard_id, msg.state
        case ipc.SessionStarted():
            # READY/RESUMED means connected even if the state report is still in flight.
            return msg.shard_id, ShardState.CONNECTED.value
        case ipc.Reconnecting():
            return msg.shard_id, ShardState.RECONNECTING.value
        case ipc.ShardStopped():
            return msg.shard_id, ShardState.STOPPED.value
        case (
            ipc.Started()
            | ipc.Ready()
            | ipc.LoadFailed()
            | ipc.Pong()
            | ipc.IdentifyRequest()
            | ipc.IdentifyRelease()
            | ipc.IdentifySent()
            | ipc.CommandQueued()
            | ipc.RestGlobalAsk()
            | ipc.RestClaim()
            | ipc.RestRelease()
            | ipc.RestStats()
            | ipc.Stats()
            | ipc.Suspended()
            | ipc.ClusterCall()
            | ipc.RunResult()
            | ipc.DeadLettered()
            | ipc.Replayed()
            | ipc.Delivering()
        ):
            return None
        case _:
            assert_never(msg)


def state_without_worker(state: str | None) -> str:
    """A shard whose worker died has no connection, whatever the worker last reported; a
    shard stopped for good stays stopped."""
    if state == ShardState.STOPPED:
        return ShardState.STOPPED.value
    return ShardState.IDLE.value


class ShardView:
    """One shard's latest known state and gauges."""

    __slots__ = (
        "backlog",
        "close_code",
        "duplicates",
        "guilds",
        "identifies",
        "last_event_at",
        "latency_s",
        "reconnects",
        "resumes",
        "session_kind",
        "session_started_at",
        "shard_id",
        "skipped",
        "state",
        "stop_reason",
        "worker_id",
    )

    def __init__(self, shard_id: int, worker_id: int) -> None:
        self.shard_id = shard_id
        self.worker_id = worker_id
        self.state: str = ShardState.IDLE.value
        self.latency_s: float | None = None
        self.reconnects = 0
        # Totals of the stats' deltas since this supervisor planned the shard.
        self.duplicates = 0
        self.skipped = 0
        self.identifies = 0
        self.resumes = 0
        self.session_started_at: float | None = None
        self.session_kind: str | None = None
        self.guilds = 0
        self.last_event_at: float | None = None
        self.backlog = 0
        self.stop_reason: str | None = None
        self.close_code: int | None = None

    def as_dict(self, now: float, session: ipc.SessionInfo | None) -> dict[str, Any]:
        return {
            "id": self.shard_id,
            "worker": self.worker_id,
            "state": self.state,
            "latency_s": self.latency_s,
            "reconnects": self.reconnects,
            "identifies": self.identifies,
            "resumes": self.resumes,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "session_age_s": _age(now, self.session_started_at),
            "guilds": self.guilds,
            "last_event_age_s": _age(now, self.last_event_at),
            "session_kind": self.session_kind,
            "seq": session.seq if session else None,
            "backlog": self.backlog,
            "stop_reason": self.stop_reason,
            "close_code": self.close_code,
        }


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, now - at), 3)


class ShardTable:
    """Every planned shard's ``ShardView``, fed by (current-generation) worker reports."""

    def __init__(self, groups: list[list[int]], first_worker: int = 0) -> None:
        """Worker ids are ``first_worker`` + the group's index (a reshard's new set runs
        beside the old one under ids of its own)."""
        self._views = {
            sid: ShardView(sid, first_worker + wid)
            for wid, group in enumerate(groups)
            for sid in group
        }

    def __len__(self) -> int:
        return len(self._views)

    def get(self, shard_id: int) -> ShardView | None:
        return self._views.get(shard_id)

    def views(self) -> list[ShardView]:
        return [self._views[sid] for sid in sorted(self._views)]

    def ids_in(self, state: str) -> set[int]:
        return {sid for sid, v in self._views.items() if v.state == state}

    def count(self, state: str) -> int:
        return sum(1 for v in self._views.values() if v.state == state)

    def all_in(self, shard_ids: list[int], *states: str) -> bool:
        return all(sid in self._views and self._views[sid].state in states for sid in shard_ids)

    def apply(self, worker_id: int, msg: ipc.ToSupervisor) -> None:
        """Apply one report; reports about shards of another worker are ignored."""
        if isinstance(msg, ipc.Stats):
            self._apply_stats(worker_id, msg)
            return
        implied = state_after(msg)
        if implied is None:
            return
        shard_id, state = implied
        view = self._views.get(shard_id)
        if view is None or view.worker_id != worker_id:
            return
        view.state = state
        match msg:
            case ipc.SessionStarted():
                view.session_kind = msg.kind
                view.session_started_at = msg.at
                view.guilds = msg.guilds
                view.close_code = None
            case ipc.Reconnecting():
                view.reconnects += 1
                view.close_code = msg.close_code
                # The old connection's round trip says nothing about the next one.
                view.latency_s = None
            case ipc.ShardStopped():
                view.stop_reason = msg.reason
                view.close_code = msg.close_code
                view.latency_s = None
            case _:
                pass  # the state alone (state_after) is all the other reports carry
        if state != ShardState.STOPPED:
            view.stop_reason = None

    def _apply_stats(self, worker_id: int, msg: ipc.Stats) -> None:
        for st in msg.shards:
            view = self._views.get(st.shard_id)
            if view is None or view.worker_id != worker_id:
                continue
            if st.latencies_s:
                view.latency_s = st.latencies_s[-1]
            view.guilds = st.guilds
            view.backlog = st.backlog
            view.duplicates += max(0, st.duplicates)
            view.skipped += max(0, st.skipped)
            view.identifies += max(0, st.identifies)
            view.resumes += max(0, st.resumes)
            if st.last_event_at is not None:
                view.last_event_at = st.last_event_at

    def worker_gone(self, shard_ids: list[int]) -> None:
        for sid in shard_ids:
            view = self._views.get(sid)
            if view is not None:
                view.state = state_without_worker(view.state)
                view.latency_s = None

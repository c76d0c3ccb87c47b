"""What a start has done and how long it should still take: the line a start logs every
``progress_interval_s`` and the one line when every shard is ready (pure; the supervisor
decides when to log them)."""

from __future__ import annotations

import math
from collections.abc import Collection

from shardmgr.plan import Plan, identify_windows, plural


class StartProgress:
    """One plan's start. ``resuming``: the shards that start with a session to resume (they
    take no identify window). ``window_s``: the identify window (Discord's 5 s)."""

    def __init__(
        self, plan: Plan, resuming: Collection[int], *, window_s: float, started_at: float
    ) -> None:
        self._ids = plan.shard_ids
        self._mc = plan.max_concurrency
        self._to_identify = [sid for sid in self._ids if sid not in resuming]
        self._window_s = window_s
        self.started_at = started_at
        # Shards of one bucket identify one window apart, whatever the machine.
        self.floor_s = identify_windows(self._to_identify, self._mc) * window_s

    def line(self, ready: Collection[int], *, budget_wait: bool = False) -> str:
        """Progress so far; ``ready``: the shards connected now."""
        done = sum(1 for sid in self._ids if sid in ready)
        of = f"{done}/{len(self._ids)} shards"
        if not self._to_identify:
            return f"resuming {of}"
        if budget_wait:
            return f"identifying {of}; the rest wait for the session start budget to refill"
        waiting = [sid for sid in self._to_identify if sid not in ready]
        left_s = identify_windows(waiting, self._mc) * self._window_s
        # Rounded up: a start with shards still to identify is never "0 s" from done.
        return f"identifying {of}, about {math.ceil(left_s)} s left"

    def done_line(self, now: float, *, stopped: int = 0) -> str:
        """The one line once every shard is ready (or ``stopped`` of them stopped for good)."""
        n = len(self._ids)
        took = f"in {now - self.started_at:.1f} s"
        why = f"identify floor {self.floor_s:.1f} s"
        if not self._to_identify:
            why = "all resumed" if n > 1 else "resumed"
        if stopped:
            return f"{n - stopped} of {plural(n, 'shard')} ready {took}, {stopped} stopped ({why})"
        shards = f"all {n} shards" if n > 1 else "1 shard"
        return f"{shards} ready {took} ({why})"

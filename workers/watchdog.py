"""The worker's only thread: it watches the event loop from outside and never touches it.

A beat task on the loop records when the loop last turned and how late it woke (the loop
lag, reported with the stats). The thread notices when the loop has not turned for
``stall_s`` and logs, once per stall, the loop thread's stack and the events the shards'
handlers are inside (``workers.inflight``), at ERROR: the line that says which handler
blocks, written before the supervisor's ping timeout kills the worker. The stack is also
left in the in-flight file, where the supervisor picks it up for the dead-letter record.

Why a thread: a blocked loop runs no task, so only another thread can see it blocked."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Final

from workers.inflight import InFlightFile

log = logging.getLogger(__name__)

# How often the loop beats and the thread looks, as a fraction of the stall threshold.
_TICKS_PER_STALL: Final = 5
_MAX_TICK_S: Final = 1.0


class Watchdog:
    def __init__(
        self,
        stall_s: float,
        inflight: InFlightFile | None = None,
        shard_ids: Sequence[int] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_s = stall_s
        self._tick = min(stall_s / _TICKS_PER_STALL, _MAX_TICK_S)
        self._inflight = inflight
        self._shard_ids = list(shard_ids)
        self._monotonic = monotonic
        self._last_turn = monotonic()
        self._max_lag = 0.0
        self._loop_thread: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat_task: asyncio.Task[None] | None = None
        # Stalls logged (one per stall, however long it lasts).
        self.stalls = 0

    def start(self) -> None:
        """From the event loop's thread."""
        self._loop_thread = threading.get_ident()
        self._last_turn = self._monotonic()
        self._beat_task = asyncio.get_running_loop().create_task(self._beat())
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._beat_task is not None:
            self._beat_task.cancel()
            await asyncio.gather(self._beat_task, return_exceptions=True)
        if self._thread is not None:
            # It wakes on the stop event at once; a join off the loop keeps the loop free.
            await asyncio.to_thread(self._thread.join, self._tick * 2)

    def take_lag(self) -> float:
        """The largest loop lag since the previous call (seconds)."""
        lag, self._max_lag = self._max_lag, 0.0
        return lag

    async def _beat(self) -> None:
        tick = self._tick
        while True:
            before = self._last_turn = self._monotonic()
            await asyncio.sleep(tick)
            lag = self._monotonic() - before - tick
            if lag > self._max_lag:
                self._max_lag = lag

    def _watch(self) -> None:
        logged_for: float | None = None
        while not self._stop.wait(self._tick):
            last = self._last_turn
            stalled = self._monotonic() - last
            if stalled >= self.stall_s and logged_for != last:
                logged_for = last
                try:
                    self._report(stalled)
                except Exception:  # the watchdog must never die of its own report
                    log.exception("watchdog report failed")

    def _report(self, stalled_s: float) -> None:
        self.stalls += 1
        frame = sys._current_frames().get(self._loop_thread or -1)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
        inside: list[dict[str, object]] = []
        if self._inflight is not None:
            for sid, suspect in zip(self._shard_ids, self._inflight.suspects(), strict=False):
                if suspect is not None:
                    inside.append(
                        {
                            "shard": sid,
                            "seq": suspect.first_seq,
                            "last_seq": suspect.last_seq,
                            "t": suspect.event,
                        }
                    )
            self._inflight.write_stack(stack)
        log.error(
            "event loop blocked: a handler runs blocking code (use asyncio.to_thread or an "
            "executor for it); the worker is killed as hung if it does not return",
            extra={
                "stalled_s": round(stalled_s, 2),
                "inside": inside,
                "stack": stack,
            },
        )

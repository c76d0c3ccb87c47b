"""Warnings anyone can trigger (a refused request, an accept error, a failing save) are
logged at a bounded rate: one line per interval, then a count of those suppressed."""

from __future__ import annotations

import logging
from typing import Any, Final

from workers.clock import REAL_CLOCK, Clock
from workers.logsetup import fields

LOG_INTERVAL_S: Final = 10.0


class LogThrottle:
    """At most one warning per ``interval_s``; the next one says how many were suppressed."""

    def __init__(
        self, logger: logging.Logger, interval_s: float = LOG_INTERVAL_S, clock: Clock = REAL_CLOCK
    ) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._clock = clock
        self._next_at: float | None = None
        self.suppressed = 0

    def warning(self, message: str, **kw: Any) -> bool:
        """Log ``message`` unless one was logged within the interval; True if logged."""
        now = self._clock.monotonic()
        if self._next_at is not None and now < self._next_at:
            self.suppressed += 1
            return False
        if self.suppressed:
            kw["suppressed"] = self.suppressed
        self._log.warning(message, extra=fields(**kw))
        self.suppressed = 0
        self._next_at = now + self._interval_s
        return True

"""The closed label sets of shardmgr's metrics (anything else folds into ``other``, so bad
data cannot blow up the series count) and ``Family``, a labelled metric that remembers its
children so a re-plan can drop them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import Counter, Enum, Gauge, Histogram

from workers import ipc
from workers.events import DISPATCH_NAMES
from workers.protocol import CloseCode

OTHER: Final = "other"
RECONNECT_REASONS: Final = frozenset(reason.value for reason in ipc.Reason)
RESTART_REASONS: Final = frozenset({"exit", "hung", "rolling", "replan"})
SESSION_KINDS: Final = frozenset({"identify", "resume"})
BYTE_FORMS: Final = ("compressed", "inflated")
CLOSE_CODES: Final = frozenset(str(int(code)) for code in CloseCode)

# Dispatch names documented in the protocol reference (section 9). Anything else is "other".
EVENT_TYPES: Final = DISPATCH_NAMES


def fold(value: str, allowed: Iterable[str]) -> str:
    """``value`` if it belongs to the closed set, else ``other``."""
    return value if value in allowed else OTHER


def event_label(name: str) -> str:
    return fold(name, EVENT_TYPES)


def close_code_label(code: int | None) -> str:
    if code is None:
        return "none"
    return fold(str(code), CLOSE_CODES)


LabelTuple = tuple[str, ...]


class Family:
    """A labelled metric plus the label sets it has created, so a re-plan can drop the
    series of shards and workers that no longer exist (prometheus-client has no query
    for "children whose worker label is 3")."""

    __slots__ = ("children", "metric")

    def __init__(self, metric: Counter | Gauge | Histogram | Enum) -> None:
        self.metric = metric
        self.children: set[LabelTuple] = set()

    def touch(self, *values: str) -> None:
        self.children.add(values)

    def drop(self, keep: Callable[[LabelTuple], bool]) -> None:
        for values in [v for v in self.children if not keep(v)]:
            self.metric.remove(*values)
            self.children.discard(values)

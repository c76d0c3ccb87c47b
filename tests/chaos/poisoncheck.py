"""Poison events in a chaos run's verdict: pure functions, no I/O.

The run injects messages whose content is a marker (``make_marker``); the chaos bot
(``tests/chaos/bot.py``) appends a sighting of each one to the events file and then takes
its worker down. The supervisor's dead-letter file (``shardmgr.deadletters``) must then hold
each marker exactly once, at the seq the handler choked on, with the right reason, after
exactly ``DEATHS_TO_SKIP`` sightings. Dead letters are not gaps: the seqs they hold are
taken out of the gap check and listed instead.

A dead letter names its shard and seq but not its session (a seq restarts at 1 with each
IDENTIFY); it belongs to the shard's session that was live when it was written, the one the
fake identified last before then: the successor resumed that session to deliver past it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from shardmgr.poison import DEATHS_TO_SKIP

if TYPE_CHECKING:
    from tests.chaos.checker import Delivery, FakeSession

PREFIX: Final = "chaos-poison-"
REASONS: Final = frozenset({"crash", "hang"})


def make_marker(n: int, reason: str) -> str:
    """The content of the ``n``th poison message; the handler reads ``reason`` from it."""
    return f"{PREFIX}{n}-{reason}"


def reason_of(content: object) -> str | None:
    """``"crash"`` or ``"hang"`` for a poison marker, None for any other content."""
    if not isinstance(content, str) or not content.startswith(PREFIX):
        return None
    reason = content.rpartition("-")[2]
    return reason if reason in REASONS else None


@dataclass(frozen=True, slots=True)
class InjectedPoison:
    marker: str
    shard_id: int  # the shard the fake sent it to
    reason: str  # what the dead letter must say: "crash" or "hang"


@dataclass(frozen=True, slots=True)
class DeadLetterRec:
    """One line of ``dead-letters.jsonl``; ``marker`` when its content is a poison marker."""

    shard_id: int
    seq: int
    t: str
    reason: str
    at: float
    marker: str | None = None

    def describe(self) -> str:
        return f"shard {self.shard_id} seq {self.seq} {self.reason}" + (
            f" ({self.marker})" if self.marker else ""
        )


def parse_dead_letters(lines: Iterable[str]) -> list[DeadLetterRec]:
    out = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("shard_id"), int):
            continue
        d = doc.get("d")
        content = d.get("content") if isinstance(d, dict) else None
        out.append(
            DeadLetterRec(
                shard_id=doc["shard_id"],
                seq=int(doc.get("seq") or 0),
                t=str(doc.get("t")),
                reason=str(doc.get("reason")),
                at=float(doc.get("at") or 0.0),
                marker=content if reason_of(content) else None,
            )
        )
    return out


def letter_sessions(
    letters: Sequence[DeadLetterRec], sessions: Sequence[FakeSession]
) -> list[str | None]:
    """The session each letter belongs to (None: the shard had none yet)."""
    out: list[str | None] = []
    for letter in letters:
        before = [
            s for s in sessions if s.shard_id == letter.shard_id and s.created_at <= letter.at
        ]
        out.append(max(before, key=lambda s: s.created_at).session_id if before else None)
    return out


def dead_by_session(
    letters: Sequence[DeadLetterRec], sessions: Sequence[FakeSession]
) -> dict[str, frozenset[int]]:
    """Session id -> the seqs of it that were dead-lettered."""
    found: dict[str, set[int]] = defaultdict(set)
    for letter, sid in zip(letters, letter_sessions(letters, sessions), strict=True):
        if sid is not None:
            found[sid].add(letter.seq)
    return {sid: frozenset(seqs) for sid, seqs in found.items()}


def poison_verdict(
    poisons: Sequence[InjectedPoison],
    letters: Sequence[DeadLetterRec],
    sessions: Sequence[FakeSession],
    by_session: Mapping[str, Sequence[Delivery]],
) -> tuple[bool, str]:
    """Each poison dead-lettered once, where and why it killed its worker; every other dead
    letter shares a poison's shard and session (a batch is suspect as a whole)."""
    sighted = [(sid, r) for sid, recs in by_session.items() for r in recs if r.poison]
    homes = letter_sessions(letters, sessions)
    episodes: set[tuple[int, str | None]] = set()
    problems: list[str] = []
    for p in poisons:
        mine = [(x, sid) for x, sid in zip(letters, homes, strict=True) if x.marker == p.marker]
        if len(mine) != 1:
            problems.append(f"{p.marker} dead-lettered {len(mine)} times")
            continue
        letter, sid = mine[0]
        episodes.add((letter.shard_id, sid))
        if (letter.shard_id, letter.reason) != (p.shard_id, p.reason):
            problems.append(
                f"{p.marker}: {letter.describe()}, expected shard {p.shard_id} {p.reason}"
            )
        seen = [(s, r) for s, r in sighted if r.poison == p.marker]
        elsewhere = [r for s, r in seen if (s, r.shard, r.seq) != (sid, p.shard_id, letter.seq)]
        if len(seen) != DEATHS_TO_SKIP or elsewhere:
            problems.append(
                f"{p.marker}: handed to the handler {len(seen)} times (not "
                f"{DEATHS_TO_SKIP}), {len(elsewhere)} not at {letter.describe()}"
            )
    strays = [x for x, sid in zip(letters, homes, strict=True) if (x.shard_id, sid) not in episodes]
    if strays:
        problems.append(
            "dead letters beside no poison event: " + ", ".join(x.describe() for x in strays[:3])
        )
    if problems:
        return False, "; ".join(problems)
    return True, (
        f"{len(poisons)} injected, each dead-lettered once after {DEATHS_TO_SKIP} deaths "
        f"at its seq; {len(letters)} letters in all"
    )


def letters_line(letters: Sequence[DeadLetterRec], poisons: Sequence[InjectedPoison]) -> str:
    shown = ", ".join(x.describe() for x in letters[:3]) + (", ..." if len(letters) > 3 else "")
    return f"poison events: {len(poisons)}  dead letters (not gaps): {len(letters)}" + (
        f": {shown}" if letters else ""
    )

"""Fatal gateway answers: which shards Discord refused for good, and what the operator must
change before starting again. When every shard is refused, running on helps nobody: the
supervisor says the fix in one line and exits with ``EXIT_FATAL``.

4011 (sharding required) is not here: it re-plans with more shards."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from shardmgr.settingvalues import ranges_text
from workers import ipc
from workers.ipc import ShardState
from workers.protocol import INTENT_BITS, PRIVILEGED_INTENTS, CloseCode

# ``shardmgr start``'s exit status when every shard stopped on a fatal close.
EXIT_FATAL: Final = 3

FIXES: Final[dict[int, str]] = {
    CloseCode.AUTHENTICATION_FAILED: (
        "the token is wrong or was reset: get a new one from the Discord Developer Portal "
        "(your application's Bot page, Reset Token) and start again"
    ),
    CloseCode.INVALID_SHARD: (
        "--total-shards / --shard-ids are invalid for this bot: fix them, or use --shards auto"
    ),
    CloseCode.INVALID_API_VERSION: (
        "the gateway refused the API version: point --api-base at a v10 API"
    ),
    CloseCode.INVALID_INTENTS: (
        "an intent value is invalid: pass --intents as known names (GUILDS,GUILD_MESSAGES,...), "
        "default or all"
    ),
}


_FATAL: Final = frozenset({*FIXES, CloseCode.DISALLOWED_INTENTS})


def privileged_names(intents: int) -> list[str]:
    """The privileged intents in ``intents``, by name."""
    return [
        name
        for name, bit in INTENT_BITS.items()
        if bit & PRIVILEGED_INTENTS and intents & bit == bit
    ]


def fix_for(code: int, intents: int) -> str:
    if code == CloseCode.DISALLOWED_INTENTS:
        asked = ", ".join(privileged_names(intents)) or "privileged intents"
        return (
            f"the bot asked for {asked}, which is not enabled for it: enable it in the Discord "
            "Developer Portal (your application's Bot page, Privileged Gateway Intents) or drop "
            "it from --intents"
        )
    return FIXES[code]


class FatalStops:
    """Shards stopped on a fatal close, until a report shows one alive again (a restarted
    worker tries them once more)."""

    def __init__(self, intents: int) -> None:
        self._intents = intents
        self._codes: dict[int, int] = {}

    def on_message(self, msg: ipc.ToSupervisor) -> None:
        match msg:
            case ipc.ShardStopped(fatal=True, close_code=int(code)) if code in _FATAL:
                self._codes[msg.shard_id] = code
            case ipc.ShardStopped():
                self._codes.pop(msg.shard_id, None)
            case ipc.ShardStateChanged() if msg.state is not ShardState.STOPPED:
                self._codes.pop(msg.shard_id, None)
            case ipc.SessionStarted():
                self._codes.pop(msg.shard_id, None)
            case _:
                pass

    def __bool__(self) -> bool:
        return bool(self._codes)

    def all_stopped(self, planned: Iterable[int]) -> bool:
        ids = list(planned)
        return bool(ids) and all(sid in self._codes for sid in ids)

    def explain(self) -> str:
        """One line: per close code, which shards and the fix."""
        by_code: dict[int, list[int]] = {}
        for sid, code in sorted(self._codes.items()):
            by_code.setdefault(code, []).append(sid)
        return "; ".join(
            f"shard{'s' if len(ids) > 1 else ''} {ranges_text(ids)} closed with {code}: "
            f"{fix_for(code, self._intents)}"
            for code, ids in sorted(by_code.items())
        )

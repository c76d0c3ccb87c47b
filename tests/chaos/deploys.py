"""Bad deploys in a chaos run: the bot's handler module lives in an app dir the run can edit.
A bad deploy breaks it (a syntax error), asks for a rolling restart, and expects the canary
to refuse it while the old workers keep running; then it restores the module and rolls
again, which must hand over as any rolling restart does."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tests.chaos.harness import Control

BOT_MODULE: Final = "chaos_bot"
HANDLER: Final = f"{BOT_MODULE}:handler"
GOOD_BOT: Final = "from tests.chaos.bot import handler  # noqa: F401\n"
BROKEN_BOT: Final = "from tests.chaos.bot import (handler\n"
ROLL_TIMEOUT_S: Final = 30.0


def write_app(app: Path) -> Path:
    app.mkdir(parents=True, exist_ok=True)
    (app / f"{BOT_MODULE}.py").write_text(GOOD_BOT)
    return app


async def _roll_state(ctl: Control) -> str | None:
    doc = await ctl.status()
    return None if doc is None else str(doc["supervisor"]["rolling"]["state"])


async def bad_deploy(ctl: Control, app: Path) -> tuple[bool, bool, str]:
    """(refused, the fixed deploy's roll accepted, a note for the fault log)."""
    from tests.chaos.harness import wait_for

    source = app / f"{BOT_MODULE}.py"

    async def idle() -> bool:
        return await _roll_state(ctl) not in (None, "running")

    # One roll at a time: a restart asked for during another is refused (409).
    if not await wait_for("roll idle", idle, ROLL_TIMEOUT_S):
        return False, False, "a rolling restart never finished"
    source.write_text(BROKEN_BOT)
    try:
        status = await ctl.rolling_restart()
        if status != 202:
            return False, False, f"broken deploy's restart -> {status}"

        async def refused() -> bool:
            return await _roll_state(ctl) == "failed"

        was_refused = await wait_for("bad deploy refused", refused, ROLL_TIMEOUT_S)
    finally:
        source.write_text(GOOD_BOT)
    fixed = await ctl.rolling_restart()
    note = f"{'refused' if was_refused else 'NOT refused'}, fixed deploy -> {fixed}"
    return was_refused, fixed == 202, note

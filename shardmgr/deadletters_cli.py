"""``shardmgr dead-letters list`` and ``shardmgr dead-letters replay SHARD:SEQ``."""

from __future__ import annotations

import re
import time
import urllib.error

from shardmgr import deadletters, statefiles
from shardmgr.adminclient import request_json
from shardmgr.deadletters import DeadLetter
from shardmgr.errors import UserError
from shardmgr.presence import _error_of, admin_secret

_TARGET = re.compile(r"^(\d+):(\d+)$")
# A stack is long: the list shows its last line, `--stacks` shows it whole.
_DETAIL_CHARS = 120


def parse_target(text: str) -> tuple[int, int]:
    match = _TARGET.match(text.strip())
    if match is None:
        raise UserError(f"dead letter {text!r} must look like SHARD:SEQ (e.g. 3:1042)")
    return int(match[1]), int(match[2])


def lines(letters: list[DeadLetter], stacks: bool = False) -> list[str]:
    if not letters:
        return ["no dead letters"]
    out = []
    for letter in letters:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(letter.at))
        size = len(bytes(letter.d))
        out.append(
            f"{letter.shard_id}:{letter.seq}  {letter.t}  {letter.reason.value}  {at}  {size} bytes"
        )
        if letter.stack:
            text = letter.stack.rstrip()
            out.append(text if stacks else "    " + text.splitlines()[-1][:_DETAIL_CHARS].strip())
    return out


def show(state_dir: str, stacks: bool = False) -> int:
    try:
        letters = deadletters.read_all(state_dir)
    except OSError as exc:
        raise UserError(statefiles.refusal(deadletters.path_in(state_dir), exc)) from None
    print("\n".join(lines(letters, stacks)))
    return 0


def replay(address: str, target: str, timeout_s: float = 60.0) -> str:
    shard_id, seq = parse_target(target)
    secret = admin_secret()

    def refused(exc: urllib.error.HTTPError) -> str:
        return _error_of(exc)

    doc = request_json(
        address,
        "/dead-letters/replay",
        body={"shard_id": shard_id, "seq": seq},
        secret=secret,
        timeout_s=timeout_s,
        http_error=refused,
    )
    return str(doc.get("replayed", doc))

"""The dispatch event a handler receives: shard, seq, name and the body, decoded lazily."""

from __future__ import annotations

from typing import Any

import msgspec

_decode = msgspec.json.decode


class Event(msgspec.Struct, gc=False):
    """One gateway dispatch. ``raw`` is the body's JSON bytes; ``data()`` decodes it on
    first use and caches the result, so handlers that only forward bytes never pay for
    a parse.

    A struct the garbage collector does not track: one is made per dispatch and up to
    ``handler_backlog`` are alive per shard, and as tracked objects they kept the young
    generation collecting (13% of the receive path's time in ``make bench``). Untracked
    objects must not sit in reference cycles: nothing here refers back to an event, so a
    handler must not store an event inside that event's own ``data()`` (it would leak)."""

    shard_id: int
    seq: int | None
    name: str
    _body: msgspec.Raw | bytes
    # Which session of the shard produced the event: the checkpoint only compares
    # seqs within one session (a fresh IDENTIFY restarts seq at 1).
    _epoch: int = 0
    # The gateway session (READY's session_id) that produced the event: with ``seq`` it
    # names the event uniquely, which consumers of a sink de-duplicate on.
    session_id: str | None = None
    _data: Any = None
    _decoded: bool = False

    @property
    def raw(self) -> bytes:
        body = self._body
        if not isinstance(body, bytes):
            body = bytes(memoryview(body))
            self._body = body
        return body

    def data(self) -> Any:
        if not self._decoded:
            self._data = _decode(self._body)
            self._decoded = True
        return self._data

    def __repr__(self) -> str:
        return f"Event(shard_id={self.shard_id}, seq={self.seq}, name={self.name!r})"

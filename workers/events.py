"""The dispatch event a handler receives: shard, seq, name and the body, decoded lazily."""

from __future__ import annotations

from typing import Any

import msgspec

_decode = msgspec.json.decode


class Event:
    """One gateway dispatch. ``raw`` is the body's JSON bytes; ``data()`` decodes it on
    first use and caches the result, so handlers that only forward bytes never pay for
    a parse."""

    __slots__ = ("_body", "_data", "_decoded", "_epoch", "name", "seq", "shard_id")

    def __init__(
        self,
        shard_id: int,
        seq: int | None,
        name: str,
        body: msgspec.Raw | bytes,
        epoch: int = 0,
    ) -> None:
        self.shard_id = shard_id
        self.seq = seq
        self.name = name
        self._body = body
        self._data: Any = None
        self._decoded = False
        # Which session of the shard produced the event: the checkpoint only compares
        # seqs within one session (a fresh IDENTIFY restarts seq at 1).
        self._epoch = epoch

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

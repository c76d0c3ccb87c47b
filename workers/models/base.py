"""What every model shares: the Struct options, and the meaning of a snowflake."""

from __future__ import annotations

from typing import TypeAlias

import msgspec

# Discord sends ids as JSON strings ("80351110224678912"); the models hold them as int.
# The decoders run with ``strict=False``, msgspec's C-speed coercion of numeric strings to
# int (a dec_hook would be a Python call per id). Its other lax rules (a JSON number for a
# bool, "1e3" for an int) only widen what a model accepts, never what it produces.
Snowflake: TypeAlias = int
# Permission bit sets also arrive as strings of digits.
Permissions: TypeAlias = int


class Model(
    msgspec.Struct,
    kw_only=True,
    frozen=True,
    omit_defaults=True,
    repr_omit_defaults=True,
    gc=False,
):
    """Base of every gateway model.

    Field names are Discord's JSON names. A field Discord may leave out defaults to
    ``msgspec.UNSET`` (absent), distinct from ``None`` (sent as null). Unknown fields are
    ignored: Discord adds fields all the time. Frozen, because one decoded model is shared
    by every handler that asks for it; untracked by the garbage collector, because models
    are trees (as ``Event``: never store a model inside itself).

    ``kw_only`` and ``frozen`` are repeated on every subclass: msgspec applies kw_only per
    class (Discord's required fields follow optional ones in the order the docs list
    them), and mypy reads a subclass's keywords alone."""

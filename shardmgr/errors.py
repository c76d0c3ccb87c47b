"""User-facing errors: one line naming what to fix, exit status 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the operator can fix (bad flag, missing token, port in use...)."""

    exit_code = 2

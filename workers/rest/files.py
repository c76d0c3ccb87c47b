"""Attachments of multipart requests."""

from __future__ import annotations

import msgspec


class File(msgspec.Struct, frozen=True):
    """One attachment of a multipart request (``files[n]``)."""

    name: str
    data: bytes
    content_type: str = "application/octet-stream"

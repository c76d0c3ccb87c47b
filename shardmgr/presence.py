"""``shardmgr presence``: set every shard's status through the running supervisor's
``POST /presence`` (needs ``SHARDMGR_ADMIN_SECRET``, the same secret the supervisor has)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from shardmgr.adminclient import request_json
from shardmgr.config import ACTIVITY_TYPES, PRESENCE_STATUSES, presence_payload
from shardmgr.errors import UserError

SECRET_ENV = "SHARDMGR_ADMIN_SECRET"


def build_body(
    status: str, activity: str | None, activity_type: str, url: str | None
) -> dict[str, Any]:
    if status not in PRESENCE_STATUSES:
        raise UserError(f"--status must be one of {', '.join(PRESENCE_STATUSES)}, not {status!r}")
    if activity_type not in ACTIVITY_TYPES:
        raise UserError(
            f"--activity-type must be one of {', '.join(ACTIVITY_TYPES)}, not {activity_type!r}"
        )
    if activity is not None and not 1 <= len(activity) <= 128:
        raise UserError("--activity must be 1 to 128 characters")
    if url is not None:
        if activity is None or activity_type != "streaming":
            raise UserError("--url needs --activity TEXT and --activity-type streaming")
        if not url.startswith(("https://twitch.tv/", "https://www.twitch.tv/",
                               "https://youtube.com/", "https://www.youtube.com/")):
            raise UserError("--url must be a twitch.tv or youtube.com https URL (Discord's rule)")
    body = presence_payload(status, activity, activity_type, url)
    body.pop("since", None)
    return body


def send(
    address: str,
    status: str,
    activity: str | None = None,
    activity_type: str = "playing",
    url: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> str:
    """POST the presence; returns the one line to print. UserError for every failure."""
    env = os.environ if env is None else env
    body = build_body(status, activity, activity_type, url)
    secret = env.get(SECRET_ENV, "")
    if not secret:
        raise UserError(f"set {SECRET_ENV} to the supervisor's admin secret")
    doc = request_json(
        address, "/presence", body=body, secret=secret, timeout_s=timeout_s, http_error=_error_of
    )
    what = status if activity is None else f"{status}, {activity_type} {activity!r}"
    return f"presence {what} sent to {doc.get('shards')} of {doc.get('planned')} shards"


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(exc.read())
    except (ValueError, OSError):
        return exc.reason or "error"
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    return str(doc)

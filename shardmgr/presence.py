"""``shardmgr presence``: set every shard's status through the running supervisor's
``POST /presence`` (needs ``SHARDMGR_ADMIN_SECRET``, the same secret the supervisor has)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

from shardmgr.adminclient import request_json
from shardmgr.errors import UserError
from workers.protocol import PresenceStatus

SECRET_ENV = "SHARDMGR_ADMIN_SECRET"
PRESENCE_STATUSES: Final = tuple(status.value for status in PresenceStatus)
# Discord's activity types by name (bots may not use 4 "custom" with a name only: it shows
# ``state``, so a custom activity's text goes there).
ACTIVITY_TYPES: Final = {
    "playing": 0,
    "streaming": 1,
    "listening": 2,
    "watching": 3,
    "custom": 4,
    "competing": 5,
}


def presence_payload(
    status: str, activity: str | None, activity_type: str = "playing", url: str | None = None
) -> dict[str, object]:
    """Op 3's ``d``: one activity named ``activity`` (or none)."""
    activities: list[dict[str, object]] = []
    if activity is not None:
        kind = ACTIVITY_TYPES[activity_type]
        entry: dict[str, object] = {"name": activity, "type": kind}
        if kind == ACTIVITY_TYPES["custom"]:
            # Discord shows a custom status's ``state``; ``name`` must still be present.
            entry = {"name": "Custom Status", "type": kind, "state": activity}
        if url is not None:
            entry["url"] = url
        activities.append(entry)
    return {"since": None, "activities": activities, "status": status, "afk": False}


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
        if not url.startswith(
            (
                "https://twitch.tv/",
                "https://www.twitch.tv/",
                "https://youtube.com/",
                "https://www.youtube.com/",
            )
        ):
            raise UserError("--url must be a twitch.tv or youtube.com https URL (Discord's rule)")
    body = presence_payload(status, activity, activity_type, url)
    body.pop("since", None)
    return body


def admin_secret(env: Mapping[str, str] | None = None) -> str:
    secret = (os.environ if env is None else env).get(SECRET_ENV, "")
    if not secret:
        raise UserError(f"set {SECRET_ENV} to the supervisor's admin secret")
    return secret


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
    body = build_body(status, activity, activity_type, url)
    secret = admin_secret(env)

    def refused(exc: urllib.error.HTTPError) -> str:
        reason = _error_of(exc)
        if exc.code == 403 and "disabled" in reason:
            # The supervisor has no secret at all: no value set here can ever work.
            raise UserError(
                f"the supervisor at {address} was started without an admin secret: restart it "
                f"with {SECRET_ENV} set (the same value as here)"
            )
        return reason

    doc = request_json(
        address, "/presence", body=body, secret=secret, timeout_s=timeout_s, http_error=refused
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

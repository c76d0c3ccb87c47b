"""The chaos bot's planted bug: which events it chokes on, and how."""

from __future__ import annotations

import json

from tests.chaos.bot import poison_reason
from tests.chaos.poisoncheck import make_marker
from workers.events import Event


def message(content: str, name: str = "MESSAGE_CREATE") -> Event:
    return Event(0, 5, name, json.dumps({"content": content, "guild_id": "1"}).encode())


def test_a_poison_marker_says_how_the_bot_dies() -> None:
    assert poison_reason(message(make_marker(1, "crash"))) == "crash"
    assert poison_reason(message(make_marker(2, "hang"))) == "hang"


def test_ordinary_messages_and_other_events_are_not_poison() -> None:
    assert poison_reason(message("hello")) is None
    assert poison_reason(message("chaos-poison-3-explode")) is None
    assert poison_reason(message(make_marker(1, "crash"), name="MESSAGE_UPDATE")) is None

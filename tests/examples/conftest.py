"""The REST tests' Discord-shaped server and clients, for the example bots."""

from tests.rest.conftest import discord, make_client

__all__ = ["discord", "make_client"]

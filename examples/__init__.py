"""Bots that show the handler API end to end (run from the repository root)."""

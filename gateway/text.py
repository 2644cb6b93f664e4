"""Small helpers for the text people read: log lines and command output."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 device"``, ``"3 devices"``: ``n`` and the noun in the number ``n`` asks for."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"

"""Small wording helpers for messages people read."""

from __future__ import annotations


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: ``count(1, "file") -> "1 file"``,
    ``count(3, "file") -> "3 files"`` (nouns that take a plain ``s``)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"

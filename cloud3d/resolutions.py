"""The named frame sizes of the toolkit, as in the reference paper (1080p and 720p)."""

from __future__ import annotations

#: Named output resolutions, name -> (width, height) in pixels.
RESOLUTIONS: dict[str, tuple[int, int]] = {"1080p": (1920, 1080), "720p": (1280, 720)}


def resolution_name(width: int, height: int) -> str:
    """Name a frame size: the :data:`RESOLUTIONS` name if it is one, else ``"{height}p"``."""
    for name, size in RESOLUTIONS.items():
        if size == (width, height):
            return name
    return f"{height}p"

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


def size_problem(resolution: str, width: int, height: int) -> str | None:
    """Why a ``width`` x ``height`` frame does not belong to the group ``resolution``, or ``None``.

    A named group (``720p``, ``1080p``) must have exactly its size; any other ``{h}p``
    group must be ``h`` pixels high.
    """
    if resolution in RESOLUTIONS:
        expect = RESOLUTIONS[resolution]
        if (width, height) != expect:
            return f"{width}x{height} image in a {resolution} group (expected {expect[0]}x{expect[1]})"
        return None
    if resolution.endswith("p") and resolution[:-1].isdigit():
        if height != int(resolution[:-1]):
            return f"{width}x{height} image in a {resolution} group (expected height {resolution[:-1]})"
        return None
    return f"unknown resolution group {resolution!r} (expected e.g. 720p, 1080p)"

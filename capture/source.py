"""The small protocol every frame source follows, and the geometry it reports.

A source hands out frames as ``(H, W, 3) uint8`` RGB numpy arrays. Sources
are context managers; ``close()`` releases displays, files and processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Geometry:
    """Where a frame came from: top-left ``(x, y)`` and size in pixels.

    For window/screen sources ``x, y`` are absolute screen coordinates; for
    video and synthetic sources they are 0.
    """

    x: int
    y: int
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}+{self.x}+{self.y}"


class SourceExhausted(Exception):
    """Raised by :meth:`FrameSource.grab` when a finite source (a video file) has no more frames."""


class FrameSource:
    """Base class of all sources.

    Attributes:
        kind: short source type (``window``, ``screen``, ``launch``, ``video``, ``synthetic``).
        realtime: ``True`` when frames come from a live display, so the recorder
            paces grabs by the wall clock; ``False`` for files and the synthetic
            scene, which are read as fast as the recorder asks.
        synthetic: ``True`` only for the built-in synthetic scene.
        geometry: geometry of the last grabbed frame (``None`` before the first grab).
    """

    kind: str = "source"
    realtime: bool = True
    synthetic: bool = False
    geometry: Geometry | None = None

    def grab(self) -> Any:  # pragma: no cover - interface
        """Return the next frame as an ``(H, W, 3) uint8`` RGB array."""
        raise NotImplementedError

    def skip(self, seconds: float) -> None:
        """Skip a warm-up period: wait for live sources, skip content for files/synthetic."""
        import time

        if seconds > 0:
            time.sleep(seconds)

    def describe(self) -> dict:
        """Provenance of the source (what it is, tool versions) for the capture log."""
        return {"kind": self.kind, "synthetic": self.synthetic}

    def close(self) -> None:
        """Release resources; safe to call twice."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""``screen`` source: a whole monitor, or an explicit rectangle, of an X display (via mss)."""

from __future__ import annotations

import numpy as np

from cloud3d.errors import Cloud3dError

from . import xdisplay
from .source import FrameSource, Geometry


def parse_region(text: str) -> Geometry:
    """Parse ``WxH+X+Y`` (X geometry syntax), e.g. ``1280x720+320+180``."""
    import re

    m = re.fullmatch(r"(\d+)x(\d+)\+(\d+)\+(\d+)", text.strip())
    if not m:
        raise Cloud3dError(f"bad region {text!r}: use WIDTHxHEIGHT+X+Y, e.g. 1280x720+0+0")
    w, h, x, y = (int(v) for v in m.groups())
    if w < 1 or h < 1:
        raise Cloud3dError(f"bad region {text!r}: width and height must be positive")
    return Geometry(x, y, w, h)


class ScreenSource(FrameSource):
    """Grab monitor ``monitor`` (1-based as in mss; 0 = all monitors) or a region.

    Args:
        monitor: mss monitor number, used when ``region`` is None.
        region: explicit rectangle in screen coordinates (clipped to the screen).
        display: X display (default ``$DISPLAY``).
    """

    kind = "screen"
    realtime = True

    def __init__(
        self, monitor: int = 1, region: Geometry | None = None, display: str | None = None
    ) -> None:
        self.display = xdisplay.resolve_display(display)
        self._sct = xdisplay.make_mss(self.display)
        mons = self._sct.monitors
        if region is not None:
            self.geometry = xdisplay.clip_to_screen(region, *xdisplay.screen_size(self._sct))
        else:
            if not 0 <= monitor < len(mons):
                n = len(mons) - 1
                self.close()
                raise Cloud3dError(f"no monitor {monitor} on {self.display}: it has {n} (1..{n})")
            m = mons[monitor]
            self.geometry = Geometry(m["left"], m["top"], m["width"], m["height"])

    def grab(self) -> np.ndarray:
        return xdisplay.grab_region(self._sct, self.geometry)

    def describe(self) -> dict:
        import mss

        return {"kind": self.kind, "synthetic": False, "display": self.display,
                "region": str(self.geometry), "mss": mss.__version__}

    def close(self) -> None:
        if self._sct is not None:
            self._sct.close()
            self._sct = None

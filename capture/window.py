"""``window`` source: the client area of one X11 window, found by title, PID or id.

The window's position and size are re-read before every grab, so the capture
follows it when it moves or is resized (the recorder's ``fit`` policy then
decides how a changed aspect ratio is handled).
"""

from __future__ import annotations

import time

import numpy as np

from cloud3d.errors import Cloud3dError

from . import xdisplay
from .source import FrameSource, Geometry


class WindowSource(FrameSource):
    """Grab the client area of an X11 window.

    Args:
        title: regular expression searched in the window title (``_NET_WM_NAME``/``WM_NAME``).
        pid: process id; matches ``_NET_WM_PID`` of that process or any descendant.
        wid: X window id (e.g. from ``xdotool search`` or ``xwininfo``).
        display: X display such as ``":99"`` (default: ``$DISPLAY``).
        timeout: seconds to wait for the window to appear.
    """

    kind = "window"
    realtime = True

    def __init__(
        self,
        title: str | None = None,
        pid: int | None = None,
        wid: int | None = None,
        display: str | None = None,
        timeout: float = 0.0,
    ) -> None:
        if title is None and pid is None and wid is None:
            raise Cloud3dError("choose the window: give --title REGEX, --pid PID or --id WINDOW_ID")
        self.display = xdisplay.resolve_display(display)
        self._dpy = xdisplay.open_display(self.display)
        self._sct = None
        try:
            info = self._wait(title, pid, wid, timeout)
            self.wid = info.wid
            self.title = info.title
            self._sct = xdisplay.make_mss(self.display)
            self._screen = xdisplay.screen_size(self._sct)
        except BaseException:
            self.close()
            raise
        self.geometry = info.geometry

    def _wait(self, title, pid, wid, timeout):
        deadline = time.monotonic() + timeout
        while True:
            info = xdisplay.find_window(self._dpy, title=title, pid=pid, wid=wid)
            if info is not None:
                return info
            if time.monotonic() >= deadline:
                what = (
                    f"title matching {title!r}" if title is not None
                    else f"PID {pid}" if pid is not None else f"id 0x{wid:x}"
                )
                raise Cloud3dError(
                    f"no visible window with {what} on display {self.display}; "
                    f"{xdisplay.describe_windows(self._dpy)}"
                )
            time.sleep(0.1)

    def current_geometry(self) -> Geometry:
        """Client-area geometry right now, clipped to the screen."""
        geo = xdisplay.window_geometry(self._dpy, self.wid)
        return xdisplay.clip_to_screen(geo, *self._screen)

    def grab(self) -> np.ndarray:
        geo = self.current_geometry()
        self.geometry = geo
        return xdisplay.grab_region(self._sct, geo)

    def describe(self) -> dict:
        import mss

        return {
            "kind": self.kind, "synthetic": False, "display": self.display,
            "window": f"0x{self.wid:x}", "title": self.title, "mss": mss.__version__,
        }

    def close(self) -> None:
        if self._sct is not None:
            self._sct.close()
            self._sct = None
        if self._dpy is not None:
            self._dpy.close()
            self._dpy = None

"""X11 helpers: connect to a display, find windows, read their client-area geometry.

Uses python-xlib for window lookup (title, ``_NET_WM_PID``, id) and mss for
the pixels (libX11 ``XGetImage`` through ctypes, several times faster than
python-xlib's pure-Python transfer of a full frame).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from cloud3d.errors import Cloud3dError

from .source import Geometry


class WindowGone(Cloud3dError):
    """The captured window was destroyed (its application closed it or exited)."""


def resolve_display(display: str | None) -> str:
    """Return ``display`` or ``$DISPLAY``; raise a clear error when neither is set."""
    name = display or os.environ.get("DISPLAY")
    if not name:
        raise Cloud3dError("no X display given: pass --display :N or set DISPLAY")
    return name


def open_display(display: str | None):
    """Open a python-xlib connection; raise :class:`Cloud3dError` if the display is not reachable."""
    from Xlib import display as xdisplay
    from Xlib import error as xerror

    name = resolve_display(display)
    try:
        return xdisplay.Display(name)
    except (xerror.DisplayError, xerror.ConnectionClosedError, OSError) as exc:
        raise Cloud3dError(
            f"cannot connect to X display {name!r} ({exc}); is an X server (or Xvfb) running there?"
            " Set --display or DISPLAY"
        ) from None


@dataclass(frozen=True)
class WindowInfo:
    """A top-level window: X id, title, owning PID (``_NET_WM_PID``, or None) and geometry."""

    wid: int
    title: str
    pid: int | None
    geometry: Geometry
    viewable: bool


def _title(dpy, win) -> str:
    try:
        net = win.get_full_property(dpy.intern_atom("_NET_WM_NAME"), dpy.intern_atom("UTF8_STRING"))
        if net is not None and net.value:
            v = net.value
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        name = win.get_wm_name()
        if isinstance(name, bytes):
            return name.decode("latin-1")
        return name or ""
    except Exception:  # window vanished or odd property type
        return ""


def _pid(dpy, win) -> int | None:
    try:
        prop = win.get_full_property(dpy.intern_atom("_NET_WM_PID"), 0)
    except Exception:
        return None
    if prop is None or not len(prop.value):
        return None
    return int(prop.value[0])


def window_geometry(dpy, wid: int) -> Geometry:
    """Absolute client-area geometry of window ``wid`` (excludes window-manager decorations)."""
    from Xlib import error as xerror

    try:
        win = dpy.create_resource_object("window", wid)
        g = win.get_geometry()
        pos = win.translate_coords(dpy.screen().root, 0, 0)
    except (xerror.BadWindow, xerror.BadDrawable):
        raise WindowGone(f"window 0x{wid:x} no longer exists (the application closed it?)") from None
    # translate_coords(root, 0, 0) gives root's origin in the window's frame: negate it.
    return Geometry(-pos.x, -pos.y, int(g.width), int(g.height))


def list_windows(dpy) -> list[WindowInfo]:
    """All named or PID-tagged windows in the tree (depth first), viewable or not."""
    from Xlib import X
    from Xlib import error as xerror

    out: list[WindowInfo] = []
    stack = [dpy.screen().root]
    while stack:
        win = stack.pop()
        try:
            children = win.query_tree().children
        except xerror.XError:
            continue
        for child in children:
            stack.append(child)
            title = _title(dpy, child)
            pid = _pid(dpy, child)
            if not title and pid is None:
                continue
            try:
                attrs = child.get_attributes()
                geo = window_geometry(dpy, child.id)
            except (xerror.XError, Cloud3dError):
                continue
            out.append(WindowInfo(child.id, title, pid, geo, attrs.map_state == X.IsViewable))
    return out


def _descendants(pid: int) -> set[int]:
    """``pid`` and all its descendant processes (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("latin-1")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    seen, todo = {pid}, [pid]
    while todo:
        for c in parents.get(todo.pop(), []):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


def find_window(
    dpy,
    title: str | None = None,
    pid: int | None = None,
    wid: int | None = None,
    display_name: str = "",
) -> WindowInfo | None:
    """Find the viewable window matching a title regex, a PID (or its children) or an id.

    Returns the largest matching viewable window, or ``None`` if none matches yet.
    ``pid`` matches ``_NET_WM_PID`` of the process or any of its descendants.
    """
    wins = [w for w in list_windows(dpy) if w.viewable and w.geometry.width > 1]
    if wid is not None:
        hits = [w for w in wins if w.wid == wid]
    else:
        hits = wins
        if pid is not None:
            family = _descendants(pid)
            hits = [w for w in hits if w.pid in family]
        if title is not None:
            try:
                rx = re.compile(title)
            except re.error as exc:
                raise Cloud3dError(f"bad --title regular expression {title!r}: {exc}") from None
            hits = [w for w in hits if rx.search(w.title)]
    if not hits:
        return None
    return max(hits, key=lambda w: w.geometry.width * w.geometry.height)


def describe_windows(dpy, limit: int = 8) -> str:
    """Short list of visible window titles, for error messages."""
    names = [f"{w.title!r} (0x{w.wid:x})" for w in list_windows(dpy) if w.viewable and w.title]
    if not names:
        return "no named windows are visible"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return "visible windows: " + ", ".join(names[:limit]) + more


def make_mss(display: str | None):
    """An mss grabber bound to ``display`` (``mss.MSS`` on mss 10+, ``mss.mss`` before)."""
    import mss

    name = resolve_display(display)
    factory = getattr(mss, "MSS", None) or mss.mss
    try:
        return factory(display=name)
    except Exception as exc:  # mss raises ScreenShotError for unreachable displays
        raise Cloud3dError(
            f"cannot connect to X display {name!r} ({exc}); is an X server (or Xvfb) running there?"
        ) from None


def grab_region(sct, geo: Geometry) -> np.ndarray:
    """Grab ``geo`` from the screen with mss as an ``(H, W, 3) uint8`` RGB array (exact pixels)."""
    from PIL import Image

    shot = sct.grab({"left": geo.x, "top": geo.y, "width": geo.width, "height": geo.height})
    # Pillow's C unpacker turns BGRX rows into RGB about 3x faster than a numpy strided copy.
    img = Image.frombuffer("RGB", (shot.width, shot.height), shot.raw, "raw", "BGRX", 0, 1)
    return np.asarray(img)


def screen_size(sct) -> tuple[int, int]:
    """(width, height) of the whole X screen (mss monitor 0)."""
    mon = sct.monitors[0]
    return int(mon["width"]), int(mon["height"])


def clip_to_screen(geo: Geometry, width: int, height: int) -> Geometry:
    """Clip a region to the screen; raise if nothing of it is on screen."""
    x0, y0 = max(geo.x, 0), max(geo.y, 0)
    x1, y1 = min(geo.x + geo.width, width), min(geo.y + geo.height, height)
    if x1 <= x0 or y1 <= y0:
        raise Cloud3dError(f"region {geo} is entirely off the {width}x{height} screen")
    return Geometry(x0, y0, x1 - x0, y1 - y0)

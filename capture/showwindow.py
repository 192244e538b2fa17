"""A tiny X11 client that shows frames in a window: the synthetic scene or a test pattern.

Run it on any X display (a desktop or Xvfb) to have a "game" window to capture::

    python -m capture.showwindow --seed 0 --size 1280x720
    cloud3d capture launch --size 1280x720 --count 30 --out caps --app synthetic-window \\
        -- python -m capture.showwindow --size 1280x720

Frames are drawn off-screen into a pixmap and copied to the window with one
``CopyArea`` request, so a grab never sees half of one frame and half of the
next. ``--pattern`` shows :func:`pattern_frame` instead of the scene: exact,
numbered colour patterns that tests use to check captured pixels bit for bit.

It can also play a misbehaving game, for tests of unattended captures: a static
loading screen for ``--ready-after`` seconds before it prints ``showwindow: ready``
(also to ``--log-file``), a picture that stops changing (``--freeze-after``), or a
crash with exit status 3 (``--crash-after``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def pattern_frame(k: int, width: int, height: int) -> np.ndarray:
    """Test pattern number ``k`` as ``(H, W, 3) uint8`` RGB.

    The 8x8 block at the top-left encodes ``k``: red = ``k % 256``, green =
    ``k // 256 % 256``, blue = 77. The rest: eight vertical colour bars whose
    colours shift with ``k``, a moving 16-pixel checkerboard and a gradient row band.
    """
    y = np.arange(height, dtype=np.int32)[:, None]
    x = np.arange(width, dtype=np.int32)[None, :]
    img = np.empty((height, width, 3), np.uint8)
    bar = (x * 8 // max(width, 1) + k) % 8
    img[..., 0] = ((bar & 1) * 200 + (y * 3 + k * 5) % 56) & 255
    img[..., 1] = (((bar >> 1) & 1) * 190 + (x + k * 7) % 64) & 255
    img[..., 2] = (((bar >> 2) & 1) * 180 + ((x // 16 + y // 16 + k) % 2) * 70) & 255
    img[:8, :8] = (k % 256, (k // 256) % 256, 77)
    return img


def loading_frame(width: int, height: int) -> np.ndarray:
    """A static, non-uniform "loading" screen: a grey 32-pixel checkerboard, ``(H, W, 3) uint8``."""
    y = np.arange(height)[:, None] // 32
    x = np.arange(width)[None, :] // 32
    grey = np.where((x + y) % 2 == 0, 60, 110).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def pattern_number(rgb: np.ndarray) -> int:
    """Read back the frame number that :func:`pattern_frame` encoded at the top-left."""
    r, g, b = (int(v) for v in rgb[3, 3])
    if b != 77:
        raise ValueError("not a pattern frame (marker pixel blue != 77)")
    return r + 256 * g


class XWindowShow:
    """An X window of ``width x height`` with title ``title`` that displays RGB frames."""

    def __init__(self, width: int, height: int, title: str, display: str | None = None) -> None:
        from Xlib import X, Xatom
        from Xlib import display as xdisplay

        self.dpy = xdisplay.Display(display)
        screen = self.dpy.screen()
        if screen.root_depth != 24:
            raise SystemExit(f"showwindow needs a 24-bit display, this one is {screen.root_depth}-bit")
        self.width, self.height = width, height
        self.win = screen.root.create_window(
            0, 0, width, height, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
            background_pixel=screen.black_pixel, event_mask=X.ExposureMask | X.KeyPressMask,
        )
        self.win.set_wm_name(title)
        self.win.change_property(self.dpy.intern_atom("_NET_WM_NAME"),
                                 self.dpy.intern_atom("UTF8_STRING"), 8, title.encode())
        self.win.change_property(self.dpy.intern_atom("_NET_WM_PID"), Xatom.CARDINAL, 32,
                                 [os.getpid()])
        self.win.set_wm_normal_hints(flags=0x30, min_width=width, min_height=height,
                                     max_width=width, max_height=height)
        self.pixmap = self.win.create_pixmap(width, height, screen.root_depth)
        self.gc = self.win.create_gc()
        self.win.map()
        self.dpy.sync()
        # python-xlib has no BIG-REQUESTS support: send the image in strips of <= 128 KiB
        self.rows_per_put = max(1, (128 << 10) // (width * 4))
        self.keys = 0

    def show(self, rgb: np.ndarray) -> None:
        """Display one ``(H, W, 3) uint8`` RGB frame atomically."""
        from Xlib import X

        bgrx = np.empty((self.height, self.width, 4), np.uint8)
        bgrx[..., :3] = rgb[..., ::-1]
        bgrx[..., 3] = 0
        for y0 in range(0, self.height, self.rows_per_put):
            y1 = min(self.height, y0 + self.rows_per_put)
            self.pixmap.put_image(self.gc, 0, y0, self.width, y1 - y0, X.ZPixmap, 24, 0,
                                  bgrx[y0:y1].tobytes())
        self.win.copy_area(self.gc, self.pixmap, 0, 0, self.width, self.height, 0, 0)  # dst.copy_area(src)
        self.dpy.sync()
        while self.dpy.pending_events():
            ev = self.dpy.next_event()
            if ev.type == X.KeyPress:
                self.keys += 1
                print(f"showwindow: key press, keycode {ev.detail}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.dpy.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m capture.showwindow", description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1280x720", help="window size WxH (default 1280x720)")
    ap.add_argument("--seed", type=int, default=0, help="synthetic scene seed")
    ap.add_argument("--fps", type=float, default=30.0, help="frames shown per second (at most)")
    ap.add_argument("--title", default="cloud3d synthetic (SYNTHETIC)", help="window title")
    ap.add_argument("--pattern", action="store_true", help="show numbered test patterns")
    ap.add_argument("--exit-after", type=float, default=None, help="quit after this many seconds")
    ap.add_argument("--freeze-after", type=float, default=None,
                    help="stop changing the picture after this many seconds (a frozen game)")
    ap.add_argument("--ready-after", type=float, default=0.0,
                    help="show a static loading screen this long, then print 'showwindow: ready'")
    ap.add_argument("--crash-after", type=float, default=None,
                    help="exit with status 3 after this many seconds (a crashing game)")
    ap.add_argument("--log-file", default=None, help="also append the status lines to this file")
    ap.add_argument("--display", default=None, help="X display (default $DISPLAY)")
    args = ap.parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"bad --size {args.size!r}: use WIDTHxHEIGHT")
    scene = None
    if not args.pattern:
        from capture.synthetic import SyntheticScene

        scene = SyntheticScene(w, h, args.seed)
    try:
        view = XWindowShow(w, h, args.title, args.display)
    except Exception as exc:  # no display: one line, not a traceback
        print(f"showwindow: cannot open the X display: {exc}", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(f"showwindow: {line}", file=sys.stderr, flush=True)
        if args.log_file:
            with open(args.log_file, "a") as f:
                f.write(f"showwindow: {line}\n")

    say(f"window 0x{view.win.id:x} {w}x{h} pid {os.getpid()}")
    t0 = time.monotonic()
    k = 0
    ready = args.ready_after <= 0
    drawn = False  # a game frame was shown (a frozen game keeps showing its last one)
    if ready:
        say("ready")
    try:
        while args.exit_after is None or time.monotonic() - t0 < args.exit_after:
            t = time.monotonic() - t0
            if args.crash_after is not None and t >= args.crash_after:
                say("crashing (exit status 3)")
                return 3
            if not ready and t >= args.ready_after:
                ready = True
                say("ready")
            frozen = args.freeze_after is not None and t >= args.freeze_after
            if not ready:
                frame = loading_frame(w, h)
            elif not frozen or not drawn:
                frame = pattern_frame(k, w, h) if scene is None else scene.render(k)
                drawn = True
            view.show(frame)
            k += 1
            delay = t0 + k / args.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # the X server went away
        print(f"showwindow: stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        view.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

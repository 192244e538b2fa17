"""Window and screen capture on a real Xvfb with a real X client drawing known patterns."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import CLI

from capture.options import RecordOptions
from capture.recorder import record
from capture.showwindow import pattern_frame, pattern_number
from capture.window import WindowSource
from cloud3d.errors import Cloud3dError
from cloud3d.imageio import read_png_rgb

pytestmark = pytest.mark.xvfb


@pytest.fixture()
def pattern_window(xvfb_display):
    """A real X client on the Xvfb showing numbered test patterns (320x180, ~40 per second)."""
    env = dict(os.environ, DISPLAY=xvfb_display)
    proc = subprocess.Popen(
        [sys.executable, "-m", "capture.showwindow", "--pattern", "--size", "320x180",
         "--fps", "40", "--title", "pattern-window"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        line = proc.stderr.readline().decode()
        assert "window 0x" in line, line
        yield xvfb_display, proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()


def test_window_capture_reproduces_drawn_pixels(pattern_window, tmp_path):
    display, proc = pattern_window
    with WindowSource(title="^pattern-", display=display, timeout=10) as src:
        s = record(src, tmp_path, "pattern", RecordOptions(fps=12, count=8, progress=False))
    assert s.written == 8
    app = tmp_path / "pattern"
    df = pd.read_csv(app / "frames.csv", dtype={"reason": str})
    kept = df[df.status == "kept"].sort_values("index")
    numbers = []
    for rel in kept["file_native"]:
        img = read_png_rgb(app / rel)
        assert img.shape == (180, 320, 3)
        k = pattern_number(img)
        assert np.array_equal(img, pattern_frame(k, 320, 180)), f"{rel} is not pattern {k}"
        numbers.append(k)
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)  # successive differ
    assert set(zip(kept.width, kept.height, strict=True)) == {(320, 180)}


def test_window_capture_follows_move_and_resize(pattern_window):
    from Xlib import display as xdisplay

    display, _ = pattern_window
    with WindowSource(title="pattern-window", display=display, timeout=10) as src:
        first = src.grab()
        assert first.shape == (180, 320, 3) and (src.geometry.x, src.geometry.y) == (0, 0)
        dpy = xdisplay.Display(display)
        win = dpy.create_resource_object("window", src.wid)
        win.configure(x=200, y=100, width=160, height=90)  # no window manager: applies directly
        dpy.sync()
        time.sleep(0.3)
        moved = src.grab()
        dpy.close()
    assert (src.geometry.x, src.geometry.y, src.geometry.width, src.geometry.height) == (200, 100, 160, 90)
    k = pattern_number(moved)  # the client still draws 320x180: the visible part is its top-left
    assert np.array_equal(moved, pattern_frame(k, 320, 180)[:90, :160])


def test_screen_region_capture(pattern_window, tmp_path):
    display, _ = pattern_window
    r = subprocess.run(
        [*CLI, "capture", "screen", "--display", display,
         "--region", "320x180+0+0", "--app", "scr", "--count", "3", "--fps", "10",
         "--out", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for p in sorted((tmp_path / "scr" / "native").glob("*.png")):
        img = read_png_rgb(p)
        assert np.array_equal(img, pattern_frame(pattern_number(img), 320, 180))


def test_unknown_window_title_message(pattern_window, tmp_path):
    display, _ = pattern_window
    r = subprocess.run(
        [*CLI, "capture", "window", "--display", display,
         "--title", "no-such-game", "--app", "x", "--count", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no visible window with title matching 'no-such-game'" in lines[0]
    assert "pattern-window" in lines[0]  # it lists what is there


def test_unreachable_display_message(tmp_path, xvfb_binary):
    free = next(n for n in range(4321, 4400) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    r = subprocess.run(
        [*CLI, "capture", "window", "--display", f":{free}",
         "--title", "x", "--app", "x", "--count", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot connect to X display ':{free}'")
    with pytest.raises(Cloud3dError, match="cannot connect"):
        WindowSource(title="x", display=f":{free}")

"""Waiting until a launched game shows gameplay: a line in its log, then a moving picture.

Loading screens are static or change little (a progress bar, icons appearing one by
one), and menus come before the log line that a recipe waits for; so gameplay counts as
on screen once (1) the recipe's ``ready_pattern`` has appeared in the game's log, if it
has one, and then (2) the picture has changed ``ready_changes`` times within
``ready_window`` seconds. A change is a grab that is not black or uniform (standard
deviation of the sampled values above 3) and differs from the grab before it
(:data:`POLL_S` earlier) by a mean absolute difference above ``ready_mad`` (0..255 scale;
every 4th pixel in each direction, all channels).
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from pathlib import Path

import numpy as np

from cloud3d.errors import Cloud3dError

from ..launch import LaunchSource
from .recipe import GameRecipe

#: seconds between the grabs that watch the picture while waiting
POLL_S = 0.5


class NotReady(Cloud3dError):
    """Gameplay did not appear on screen in time; ``frame`` is the last picture grabbed."""

    def __init__(self, message: str, frame: np.ndarray | None = None) -> None:
        super().__init__(message)
        self.frame = frame


class LogWatcher:
    """Looks for a regular expression in what a log file gains after the watcher is made.

    Text already in the file (an earlier visit's log in a persistent home) is skipped; a
    file that shrinks (the game started it afresh) is read again from its start.
    """

    def __init__(self, path: Path, pattern: str) -> None:
        self.path = path
        self.rx = re.compile(pattern)
        try:
            self._offset = path.stat().st_size
        except OSError:
            self._offset = 0
        self._carry = ""

    def seen(self) -> bool:
        """True once the pattern has appeared (reads only the bytes added since the last call)."""
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self._offset:
                    self._offset, self._carry = 0, ""
                f.seek(self._offset)
                data = f.read(1 << 20)
        except FileNotFoundError:
            return False
        self._offset += len(data)
        text = self._carry + data.decode("utf-8", "replace")
        if self.rx.search(text):
            return True
        self._carry = text[-4096:]
        return False


def make_watcher(recipe: GameRecipe, home: Path, app_log: Path) -> LogWatcher | None:
    """The watcher of ``recipe.ready_pattern`` (``None`` without one); make it before the launch."""
    if not recipe.ready_pattern:
        return None
    return LogWatcher(home / recipe.ready_log if recipe.ready_log else app_log, recipe.ready_pattern)


def wait_until_ready(source: LaunchSource, recipe: GameRecipe, watcher: LogWatcher | None,
                     started: float, stop=None) -> float:
    """Block until ``source`` shows gameplay; return the seconds since ``started`` (monotonic).

    Raises:
        NotReady: nothing happened within ``recipe.ready_timeout`` of ``started``.
        capture.launch.AppExited: the game exited meanwhile.
    """
    deadline = started + recipe.ready_timeout
    log_name = watcher.path.name if watcher is not None else ""
    prev: np.ndarray | None = None
    rgb: np.ndarray | None = None
    changes: deque[float] = deque()
    while True:
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        now = time.monotonic()
        if now >= deadline:
            what = (f"no {recipe.ready_pattern!r} in {log_name}" if watcher is not None
                    else "the picture did not start moving")
            raise NotReady(f"gameplay not on screen {recipe.ready_timeout:g} s after launch "
                           f"({what}); last output: {source.log_tail(4)}", rgb)
        rgb = source.grab()  # raises AppExited when the game died
        if watcher is not None and not watcher.seen():
            time.sleep(POLL_S)
            continue
        watcher = None
        small = rgb[2::4, 2::4].astype(np.int16)
        moved = (prev is not None and prev.shape == small.shape
                 and float(np.abs(small - prev).mean()) > recipe.ready_mad)
        prev = small
        if moved and float(small.std()) > 3.0:
            changes.append(now)
        while changes and now - changes[0] > recipe.ready_window:
            changes.popleft()
        if len(changes) >= recipe.ready_changes:
            return time.monotonic() - started
        time.sleep(POLL_S)
